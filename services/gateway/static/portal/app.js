// The portal: a hash router over the pages; every page reads and writes through the GraphQL API.
import { SignInNeeded, gql, live, signOut, takeTokenFromLink, token } from "./api.js";
import { h, problem, show } from "./ui.js";
import { home } from "./pages/home.js";
import { newRequest, myRequests, requestPage } from "./pages/requests.js";
import { queue } from "./pages/queue.js";
import { giveKudos, feed } from "./pages/kudos.js";
import { leaderboards, profile } from "./pages/people.js";
import { insights } from "./pages/insights.js";

const ROUTES = [
  [/^\/?$/, home, "Home"],
  [/^\/new$/, newRequest, "New request"],
  [/^\/requests$/, myRequests, "My requests"],
  [/^\/requests\/([^/]+)$/, requestPage, "Request"],
  [/^\/queue$/, queue, "Queue"],
  [/^\/kudos$/, giveKudos, "Give kudos"],
  [/^\/feed$/, feed, "Feed"],
  [/^\/leaderboards$/, leaderboards, "Leaderboards"],
  [/^\/people\/([^/]+)$/, profile, "Profile"],
  [/^\/insights$/, insights, "Insights"],
];

const ME = "{ me { id name email role department title } }";
const main = document.getElementById("main");
let me = null;
let cleanups = [];
let generation = 0;  // counts navigations: only the latest one's page is shown

function signInPage(reason) {
  generation++;  // whatever page was still loading stays unshown
  document.title = "Sign in · Inside Track";
  document.getElementById("who").textContent = "";
  document.getElementById("signout").hidden = true;
  show(main, h("h1", {}, "Sign in to Inside Track"),
    reason ? problem(reason) : null,
    h("p", {}, "Open the portal from your company's intranet (it signs you in), or with a link from ",
      h("code", {}, "insidetrack token you@example.com --portal"), "."));
  main.setAttribute("aria-busy", "false");
}

async function route() {
  const current = ++generation;
  for (const undo of cleanups) undo();
  cleanups = [];
  if (!token()) return signInPage(null);
  const [path, search] = (location.hash.replace(/^#/, "") || "/").split("?");
  const query = new URLSearchParams(search || "");
  main.setAttribute("aria-busy", "true");
  // A page that takes a moment says so (instead of leaving the previous page up as if nothing happened).
  const slow = setTimeout(() => { if (current === generation) show(main, h("p", { class: "muted" }, "Loading…")); }, 300);
  try {
    if (!me) {
      const signedIn = (await gql(ME)).me;
      if (current !== generation) return;
      me = signedIn;
      document.getElementById("who").textContent = `${me.name}`;
      document.getElementById("signout").hidden = false;
      const works = me.role === "SUPPORT" || me.role === "MANAGER" || me.role === "ADMIN";
      document.querySelectorAll("[data-support]").forEach(el => { el.hidden = !works; });
      const manages = me.role === "MANAGER" || me.role === "ADMIN";  // the points service decides; the link is for them
      document.querySelectorAll("[data-manager]").forEach(el => { el.hidden = !manages; });
    }
    for (const [pattern, page, title] of ROUTES) {
      const match = path.match(pattern);
      if (!match) continue;
      document.title = `${title} · Inside Track`;
      document.querySelectorAll("#nav a").forEach(a => {
        if (a.getAttribute("href") === "#" + (path === "" ? "/" : path)) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      });
      // Each page draws into a view of its own, shown once ready if the person has not moved on meanwhile
      // (a slow page finishing late must not cover the one they went to).
      const view = h("div", { class: "view" });
      const ctx = { me, query, params: match.slice(1).map(decodeURIComponent), go: (hash) => { location.hash = hash; },
                    track: (undo) => { if (current === generation) cleanups.push(undo); else undo(); } };
      await page(view, ctx);
      clearTimeout(slow);
      if (current !== generation) return;
      show(main, view);
      main.setAttribute("aria-busy", "false");
      main.dataset.page = title;
      return;
    }
    clearTimeout(slow);
    show(main, h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/" }, "Go home")));
  } catch (error) {
    clearTimeout(slow);
    if (current !== generation) return;
    if (error instanceof SignInNeeded) { signOut(); me = null; return signInPage("Your sign-in has expired or is not valid: " + error.message); }
    show(main, problem(error.message), h("p", {}, h("button", { type: "button", onclick: route }, "Try again")));
  }
  main.setAttribute("aria-busy", "false");
}

document.getElementById("signout").addEventListener("click", () => { signOut(); me = null; location.hash = "#/"; signInPage("You are signed out."); });
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#token=")) { signOut(); me = null; takeTokenFromLink(); }  // a new sign-in link in this tab
  route(); main.focus({ preventScroll: true }); window.scrollTo(0, 0);
});
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof SignInNeeded) { signOut(); me = null; signInPage("Your sign-in has expired: open a new portal link."); }
});
takeTokenFromLink();
route();
