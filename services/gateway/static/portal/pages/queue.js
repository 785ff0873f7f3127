import { gql, live, mutate } from "../api.js";
import { h, personLink, pills, show, timeEl, toast, words } from "../ui.js";

const ROW = "id number title status priority neededBy customer requester { id name } assignees { id name }";

export async function queue(main, ctx) {
  const { me } = ctx;
  const department = ctx.query.get("department") || me.department;
  const list = h("ul", { class: "list", id: "queue" });
  const read = async (after) => (await gql(`query($f: RequestFilter, $after: String) { requests(filter: $f, first: 50, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { ${ROW} } } } }`, { f: { department, open: true }, after })).requests;
  let rows = [];
  const draw = () => {
    rows.sort((a, b) => Date.parse(a.neededBy) - Date.parse(b.neededBy));
    list.replaceChildren(...rows.map(r => h("li", { "data-request": r.id },
      h("div", { class: "row" }, h("a", { href: "#/requests/" + r.id }, `#${r.number} ${r.title}`), pills(r)),
      h("div", { class: "muted" }, r.customer, " · from ", personLink(r.requester), " · needed by ", timeEl(r.neededBy),
        " · ", r.assignees.length ? "assigned to " + r.assignees.map(p => p.name).join(", ") : "unassigned"),
      h("div", { class: "row" },
        r.status === "SUBMITTED" ? button(r, "Acknowledge", "acknowledgeRequest") : null,
        r.status === "ACKNOWLEDGED" ? button(r, "Start work", "startRequest") : null,
        h("a", { href: "#/requests/" + r.id }, r.status === "IN_PROGRESS" ? "Ask for info or deliver" : "Open")))));
    if (!rows.length) list.replaceChildren(h("li", { class: "muted" }, "The queue is empty. Nice work!"));
  };
  const button = (r, label, mutation) => h("button", { type: "button", "aria-label": `${label} request #${r.number}`, onclick: async (event) => {
    event.target.disabled = true;
    try {
      const p = await mutate(`mutation($id: ID!) { ${mutation}(id: $id) { request { ${ROW} } errors { field code message } } }`, { id: r.id });
      if (p.errors.length) toast(p.errors[0].message);
      else { rows = rows.map(x => x.id === r.id ? p.request : x); draw(); toast(`${label}: #${r.number}`); }
    } catch (error) { toast(error.message); event.target.disabled = false; }
  } }, label);
  const page = await read(null);
  rows = page.edges.map(e => e.node);
  // The service keeps the queue by needed-by: the next page holds the later ones.
  let next = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
  const more = h("button", { type: "button", class: "secondary", hidden: !next, onclick: async () => {
    const further = await read(next);
    rows = [...rows, ...further.edges.map(e => e.node).filter(r => !rows.some(x => x.id === r.id))];
    next = further.pageInfo.hasNextPage ? further.pageInfo.endCursor : null;
    more.hidden = !next;
    draw();
  } }, "Show later ones");
  const count = h("span", { id: "queue-count" });
  const counted = (total) => { count.textContent = `${total} open, the soonest needed first; overdue and rush requests are marked.`; };
  counted(page.totalCount);
  const refresh = h("button", { type: "button", class: "secondary", onclick: async () => {
    refresh.disabled = true;
    try {
      const again = await read(null);
      rows = again.edges.map(e => e.node);
      next = again.pageInfo.hasNextPage ? again.pageInfo.endCursor : null;
      more.hidden = !next;
      counted(again.totalCount);
      draw();
    } catch (error) { toast(error.message); } finally { refresh.disabled = false; }
  } }, "Refresh");
  show(main, h("h1", {}, `Queue · ${words(department)}`), h("p", { class: "row" }, count, refresh), list, h("p", {}, more));
  draw();
  // Each listed request updates live (a colleague acknowledging, the rep answering).
  for (const r of rows.slice(0, 20)) {
    ctx.track(live.subscribe(`subscription($id: ID!) { requestChanged(id: $id) { ${ROW} } }`, { id: r.id }, (data) => {
      const changed = data.requestChanged;
      rows = rows.map(x => x.id === changed.id ? changed : x);
      draw();
    }));
  }
}
