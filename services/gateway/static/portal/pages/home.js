import { gql, live } from "../api.js";
import { GESTURES, h, personLink, pills, show, timeEl, words } from "../ui.js";

const HOME = `query($id: ID!, $mine: RequestFilter, $delivered: RequestFilter, $assigned: RequestFilter) {
  me { id name points(period: WEEK) rank(period: WEEK) monthPoints: points(period: MONTH) monthRank: rank(period: MONTH)
       badges { id name description earned tier nextTier nextThreshold progress }
       kudosAllowance { left monthlyAllowance resetsAt } rushShare { share requests rushShortNotice } }
  mine: requests(filter: $mine, first: 20) { totalCount edges { node { id number title status priority neededBy customer } } }
  delivered: requests(filter: $delivered, first: 20) { edges { node { id number title status priority neededBy customer } } }
  assigned: requests(filter: $assigned, first: 20) { totalCount edges { node { id number title status priority neededBy customer } } }
  received: kudosFeed(personId: $id, direction: RECEIVED, first: 5) { edges { node {
    id message gesture createdAt thumbnailUrl giver { id name } } } }
}`;

export async function home(main, ctx) {
  const { me } = ctx;
  const draw = async () => {
    // "Open" is what is still being worked; a delivered request waits on its rep to close the loop.
    const data = await gql(HOME, { id: me.id, mine: { requesterId: me.id, open: true }, delivered: { requesterId: me.id, status: "DELIVERED" },
                                   assigned: { assigneeId: me.id, open: true } });
    const m = data.me;
    const mine = data.mine.edges.map(e => e.node);
    const assigned = data.assigned.edges.map(e => e.node);
    const delivered = data.delivered.edges.map(e => e.node);
    const waiting = [...mine.filter(r => r.status === "WAITING_ON_REP"), ...delivered,
                     ...assigned.filter(r => r.status !== "WAITING_ON_REP" && r.status !== "DELIVERED")];
    const reason = (r) => r.status === "WAITING_ON_REP" ? "answer the team's question" : r.status === "DELIVERED"
      ? "close the loop: how did the deal end?" : r.status === "SUBMITTED" ? "acknowledge it" : "deliver it";
    const requestItem = (r, extra) => h("li", {}, h("div", { class: "row" },
      h("a", { href: "#/requests/" + r.id }, `#${r.number} ${r.title}`), pills(r)),
      h("div", { class: "muted" }, r.customer, " · needed by ", timeEl(r.neededBy), extra ? " · " + extra : ""));
    show(main, 
      h("h1", {}, `Hello, ${m.name.split(" ")[0]}`),
      h("div", { class: "grid" },
        h("section", { class: "card", "aria-labelledby": "h-week" }, h("h2", { id: "h-week" }, "This week"),
          h("div", { class: "stat", "data-test": "week-points" }, `${m.points ?? "–"} points`),
          h("div", { "data-test": "week-rank" }, m.rank ? `Rank ${m.rank} in the company` : "No rank yet this week")),
        h("section", { class: "card", "aria-labelledby": "h-month" }, h("h2", { id: "h-month" }, "This month"),
          h("div", { class: "stat", "data-test": "month-points" }, `${m.monthPoints ?? "–"} points`),
          h("div", { "data-test": "month-rank" }, m.monthRank ? `Rank ${m.monthRank} in the company` : "No rank yet this month")),
        h("section", { class: "card", "aria-labelledby": "h-allowance" }, h("h2", { id: "h-allowance" }, "Kudos to give"),
          m.kudosAllowance ? h("div", { class: "stat", "data-test": "allowance" }, `${m.kudosAllowance.left} left`) : h("div", {}, "–"),
          m.kudosAllowance ? h("div", { class: "muted" }, `of ${m.kudosAllowance.monthlyAllowance} this month · resets `, timeEl(m.kudosAllowance.resetsAt)) : null,
          h("p", {}, h("a", { class: "button", href: "#/kudos" }, "Give kudos")))),
      h("section", { "aria-labelledby": "h-waits" }, h("h2", { id: "h-waits" }, "Waiting on you"),
        waiting.length ? h("ul", { class: "list", id: "waiting" }, waiting.map(r => requestItem(r, reason(r))))
          : h("p", { class: "muted" }, "Nothing waits on you. ")),
      h("section", { "aria-labelledby": "h-open" }, h("h2", { id: "h-open" }, `My open requests (${data.mine.totalCount})`),
        mine.length ? h("ul", { class: "list" }, mine.map(r => requestItem(r)))
          : h("p", { class: "muted" }, "No open requests. ", h("a", { href: "#/new" }, "File one"))),
      h("section", { "aria-labelledby": "h-badges" }, h("h2", { id: "h-badges" }, "Badges"),
        h("ul", { class: "grid list" }, (m.badges || []).map(b => h("li", { class: "card" },
          h("strong", {}, b.name), b.tier ? ` · ${words(b.tier)}` : "", h("div", { class: "muted" }, b.description),
          h("div", {}, b.nextThreshold ? `${Math.round(b.progress * 100)}% of the way to ${b.nextTier ? words(b.nextTier) : "earning it"} (${b.nextThreshold})`
            : b.earned ? "Earned: every tier" : ""),
          h("div", { class: "bar", role: "progressbar", "aria-label": `${b.name} progress`, "aria-valuemin": "0", "aria-valuemax": "100",
                     "aria-valuenow": String(Math.round(b.progress * 100)) }, h("span", { style: `width:${Math.round(b.progress * 100)}%` })))))),
      m.rushShare && m.rushShare.requests ? h("p", { class: "muted" },
        `Rush share (30 days): ${Math.round((m.rushShare.share || 0) * 100)}% of your ${m.rushShare.requests} request${m.rushShare.requests > 1 ? "s were rushes" : " was a rush"} with under 24 business hours' notice.`) : null,
      h("section", { "aria-labelledby": "h-kudos" }, h("h2", { id: "h-kudos" }, "Recent kudos to you"),
        data.received.edges.length ? h("ul", { class: "list" }, data.received.edges.map(({ node: k }) => h("li", { class: "row" },
          h("img", { src: k.thumbnailUrl, alt: "", width: "200", height: "105" }),
          h("div", {}, h("div", {}, GESTURES[k.gesture], " from ", personLink(k.giver)), h("div", {}, k.message), timeEl(k.createdAt)))))
          : h("p", { class: "muted" }, "No kudos yet.")));
  };
  await draw();
  const refresh = () => draw().catch(() => {});
  ctx.track(live.subscribe(`subscription($id: ID) { kudosGiven(personId: $id) { id } }`, { id: me.id }, refresh, refresh));
  ctx.track(live.subscribe(`subscription($id: ID) { badgeAwarded(personId: $id) { badge } }`, { id: me.id }, refresh));
  // Points and rank follow the company boards' "me" (no re-read of the page for each award anywhere).
  for (const [period, name, when] of [["WEEK", "week", "this week"], ["MONTH", "month", "this month"]]) {
    ctx.track(live.subscribe(`subscription { leaderboardChanged(period: ${period}) { me { rank points } } }`, {}, (data) => {
      const mine = data.leaderboardChanged.me;
      const points = main.querySelector(`[data-test=${name}-points]`), rank = main.querySelector(`[data-test=${name}-rank]`);
      if (!mine || !points) return;
      points.textContent = `${mine.points} points`;
      rank.textContent = mine.rank ? `Rank ${mine.rank} in the company` : `No rank yet ${when}`;
    }));
  }
}
