#!/bin/sh
set -eu
for script in /docker-entrypoint.d/*.envsh; do
  if [ -f "$script" ]; then . "$script"; fi
done
for template in /etc/nginx/templates/*.template; do
  [ -f "$template" ] || continue
  python3 -c 'import os, sys; sys.stdout.write(os.path.expandvars(sys.stdin.read()))' \
    <"$template" >"/etc/nginx/conf.d/$(basename "$template" .template)"
done
exec "$@"
