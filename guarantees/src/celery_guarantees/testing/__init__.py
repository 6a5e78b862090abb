"""What the package's tests build on, and a project's tests may too: a throwaway
redis-server, plain and over TLS (servers.py), waiting on a condition instead of a fixed
sleep (waiting.py), and a worker's main process driven in a test's own process, for the
delivery counting (worker.py)."""
