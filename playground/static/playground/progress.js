// Follows the notification on the hello page until its last email is out.
const section = document.getElementById("notification");

async function refresh() {
  const response = await fetch(section.dataset.statusUrl);
  if (!response.ok) return false;
  const progress = await response.json();
  section.querySelector(".sent").textContent = progress.sent;
  section.querySelector(".total").textContent = progress.total;
  section.querySelector(".failed").textContent = progress.failed;
  section.querySelector(".unknown").textContent = progress.unknown;
  // Only a worker killed mid-send leaves unknowns: most notifications never show it.
  section.querySelector(".unknowns").hidden = !progress.unknown;
  const bar = section.querySelector("progress");
  bar.max = Math.max(progress.total, 1);
  bar.value = progress.sent + progress.failed + progress.unknown;
  // A notification finished early says why instead of "every email is out".
  section.querySelector(".done").hidden = !progress.done || Boolean(progress.reason);
  const reason = section.querySelector(".reason");
  reason.textContent = progress.reason;
  reason.hidden = !progress.reason;
  return progress.done;
}

async function follow() {
  let done = false;
  try {
    done = await refresh();
  } catch {
    // The server is away for a moment: keep trying.
  }
  if (!done) setTimeout(follow, 500);
}

follow();
