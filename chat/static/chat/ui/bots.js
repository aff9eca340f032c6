// Which users are bots, for the "bot" badge next to their names (PROTOCOL.md
// "Authentication": bots are shown with a badge). Events carry no bot flag; the page
// lists the bot accounts' usernames in <script type="application/json" id="parley-bots">
// (chat/token_views.py bot_names, at most a few hundred: bots are flagged one by one
// in the admin). A bot flagged after the page loaded gets its badge at the next load.

let names = null;

function load() {
  if (names === null) {
    names = new Set();
    const node = typeof document === "undefined" ? null : document.getElementById("parley-bots");
    try {
      const listed = JSON.parse(node?.textContent || "[]");
      if (Array.isArray(listed)) for (const name of listed) names.add(String(name));
    } catch {
      // A page without the list: nobody is shown as a bot.
    }
  }
  return names;
}

export function isBot(name) {
  return typeof name === "string" && load().has(name);
}
