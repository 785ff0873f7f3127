import { gql, live, mutate } from "../api.js";
import { GESTURES, field, h, personLink, show, timeEl, toast, words } from "../ui.js";

const PERIODS = ["WEEK", "MONTH", "QUARTER", "ALL"];
const DEPARTMENTS = ["SALES", "PRESALES", "PRICING", "LEGAL", "ORDER_DESK", "MARKETING", "PRODUCT", "CUSTOMER_SERVICE"];
const BOARD = "{ key entries { rank points movement person { id name department } } me { rank points } }";

export async function leaderboards(main, ctx) {
  const { me } = ctx;
  const period = ctx.query.get("period") || "WEEK";
  const scope = ctx.query.get("scope") || "COMPANY";
  const department = ctx.query.get("department") || me.department;
  const args = { period, scope, department: scope === "DEPARTMENT" ? department : null,
                 role: scope === "ROLE" ? (me.role === "REP" ? "REP" : "SUPPORT") : null };
  const table = h("table", { class: "board", id: "board" });
  const mine = h("p", { id: "my-rank" });
  const draw = (board) => {
    table.replaceChildren(h("caption", { class: "muted" }, `${words(period)} · ${scope === "DEPARTMENT" ? words(department) : words(scope)}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Rank"), h("th", { scope: "col" }, "Person"), h("th", { scope: "col" }, "Points"), h("th", { scope: "col" }, "Movement"))),
      h("tbody", {}, board.entries.map(e => h("tr", { class: e.person && e.person.id === me.id ? "me" : "" },
        h("td", {}, e.rank), h("td", {}, personLink(e.person)), h("td", {}, e.points),
        h("td", {}, e.movement == null ? "new" : e.movement > 0 ? `▲ ${e.movement}` : e.movement < 0 ? `▼ ${-e.movement}` : "–")))));
    if (!board.entries.length) table.append(h("tbody", {}, h("tr", {}, h("td", { colspan: "4" }, "No points yet in this period."))));
    mine.textContent = board.me && board.me.rank ? `You: rank ${board.me.rank} with ${board.me.points} points.` : `You have no points in this period yet.`;
  };
  const select = (name, values, current, label) => field(label, h("select", { name, id: "f-" + name, onchange: (event) => {
    const q = new URLSearchParams(ctx.query); q.set(name, event.target.value); ctx.go("#/leaderboards?" + q.toString());
  } }, values.map(v => h("option", { value: v, selected: v === current }, words(v)))));
  const QUERY = `query($p: Period!, $s: Scope, $d: Department, $r: Role) { leaderboard(period: $p, scope: $s, department: $d, role: $r, first: 20) ${BOARD} }`;
  const vars = { p: args.period, s: args.scope, d: args.department, r: args.role };
  draw((await gql(QUERY, vars)).leaderboard);
  show(main, h("h1", {}, "Leaderboards"),
    h("div", { class: "grid" }, select("period", PERIODS, period, "Period"), select("scope", ["COMPANY", "DEPARTMENT", "ROLE"], scope, "Compare with"),
      scope === "DEPARTMENT" ? select("department", DEPARTMENTS, department, "Department") : null),
    mine, table);
  ctx.track(live.subscribe(`subscription($p: Period!, $s: Scope, $d: Department, $r: Role) { leaderboardChanged(period: $p, scope: $s, department: $d, role: $r) ${BOARD} }`,
    vars, (d) => draw(d.leaderboardChanged), async () => draw((await gql(QUERY, vars)).leaderboard)));
}

export async function profile(main, ctx) {
  const id = ctx.params[0];
  const data = await gql(`query($id: ID!) { person(id: $id) { id name title role department manager { id name }
      week: points(period: WEEK) weekRank: rank(period: WEEK) month: points(period: MONTH) all: points(period: ALL)
      badges { id name earned tier progress nextTier nextThreshold } rushShare { share requests } leaderboardVisible }
    kudosFeed(personId: $id, direction: RECEIVED, first: 6) { edges { node { id message gesture createdAt thumbnailUrl giver { id name } } } } }`, { id });
  const p = data.person;
  if (!p) { show(main, h("h1", {}, "Person not found")); return; }
  const earned = (p.badges || []).filter(b => b.earned);
  show(main, h("h1", {}, p.name),
    h("p", {}, [p.title, words(p.department), words(p.role)].filter(Boolean).join(" · "), p.manager ? [" · reports to ", personLink(p.manager)] : ""),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("div", { class: "stat" }, p.week ?? "–"), `points this week${p.weekRank ? ` (rank ${p.weekRank})` : ""}`),
      h("div", { class: "card" }, h("div", { class: "stat" }, p.month ?? "–"), "points this month"),
      h("div", { class: "card" }, h("div", { class: "stat" }, p.all ?? "–"), "points all-time")),
    p.rushShare && p.rushShare.requests ? h("p", {}, `Rush share (30 days): ${Math.round((p.rushShare.share || 0) * 100)}%`) : null,
    ctx.me.id === p.id ? visibilityToggle(p) : (p.leaderboardVisible ? null : h("p", { class: "muted" }, "Keeps off the leaderboards.")),
    h("h2", {}, "Badges"),
    earned.length ? h("ul", { class: "chips list" }, earned.map(b => h("li", { class: "chip" }, b.name, b.tier ? ` (${words(b.tier)})` : "")))
      : h("p", { class: "muted" }, "No badges yet."),
    h("h2", {}, "Kudos received"),
    data.kudosFeed.edges.length ? h("ul", { class: "list" }, data.kudosFeed.edges.map(({ node: k }) => h("li", { class: "row" },
      h("img", { src: k.thumbnailUrl, alt: "", width: "200", height: "105" }),
      h("div", {}, h("div", {}, GESTURES[k.gesture], " from ", personLink(k.giver)), h("div", {}, k.message), timeEl(k.createdAt)))))
      : h("p", { class: "muted" }, "None yet."),
    ctx.me.id !== p.id ? h("p", {}, h("a", { class: "button", href: "#/kudos?to=" + p.id }, "Give " + p.name.split(" ")[0] + " kudos")) : null);
}

/** One's own "keep me off the leaderboards" setting (the requests service accepts it only from
 *  the person themselves; the box shows what the service answered). */
function visibilityToggle(p) {
  const box = h("input", { type: "checkbox", id: "f-hidden", name: "visible", checked: !p.leaderboardVisible });
  const note = h("span", { class: "hint", id: "hidden-state" }, p.leaderboardVisible ? "" : " — you are off the leaderboards");
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      const answer = await mutate("mutation($v: Boolean!) { setLeaderboardVisibility(visible: $v) { leaderboardVisible errors { code message } } }",
        { v: !box.checked });
      if (answer.errors.length) { toast(answer.errors[0].message); box.checked = !box.checked; return; }
      box.checked = !answer.leaderboardVisible;
      note.textContent = answer.leaderboardVisible ? "" : " — you are off the leaderboards";
      toast(answer.leaderboardVisible ? "You are back on the leaderboards." : "You are off everyone else's leaderboards (still scored; you still see your rank).");
    } catch (error) {
      box.checked = !box.checked;
      toast(error.message);
    } finally {
      box.disabled = false;
    }
  });
  return h("p", {}, h("label", { for: "f-hidden" }, box, " Keep me off the leaderboards"), note);
}
