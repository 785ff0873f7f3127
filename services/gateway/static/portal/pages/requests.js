import { gql, live, mutate } from "../api.js";
import { GESTURES, KINDS, OPEN, config, field, h, now, personLink, pills, problem, show, showErrors, timeEl, toast, when, words } from "../ui.js";

const REQUEST_FIELDS = `id number title kind department status priority rushReason outcome customer dealName dealValue commitment details
  neededBy submittedAt acknowledgedAt deliveredAt closedAt briefComplete briefGaps
  requester { id name } assignees { id name }
  timeline { id at type text actor { id name } }`;

// -- New request ---------------------------------------------------------------------------

/** What keeps the brief from being complete, as the requests service will judge it. */
function briefChecks(form) {
  const rules = config.brief || { minDetails: 80, minNoticeDays: 2 };
  const v = (name) => (form.elements[name].value || "").trim();
  const rush = v("priority") === "RUSH";
  const neededBy = v("neededBy") ? new Date(v("neededBy")) : null;
  const enoughNotice = neededBy && rules.completeFrom && neededBy.getTime() >= Date.parse(rules.completeFrom);
  return [
    [!!v("customer"), "Customer named"],
    [!!v("commitment"), "What was committed to the customer"],
    [v("details").length >= rules.minDetails, `Details: at least ${rules.minDetails} characters (${v("details").length} so far)`],
    [!!(enoughNotice || (rush && v("rushReason"))), `Needed-by at least ${rules.minNoticeDays} business days ahead (or rush with a reason)`],
  ];
}

export async function newRequest(main, ctx) {
  const input = (name, attrs = {}) => h("input", { type: "text", name, id: "f-" + name, ...attrs });
  const kind = h("select", { name: "kind", id: "f-kind", required: true },
    Object.entries(KINDS).map(([value, [label]]) => h("option", { value }, label)));
  const queue = h("p", { class: "muted", id: "queue-note" });
  const priority = h("select", { name: "priority", id: "f-priority" }, ["NORMAL", "HIGH", "RUSH"].map(p => h("option", { value: p }, words(p))));
  const rushField = field("Why is it a rush?", h("textarea", { name: "rushReason", id: "f-rushReason" }), "a rush needs a reason");
  const checks = h("ul", { class: "gaps", id: "brief-checks" });
  const status = h("p", { id: "brief-status", "aria-live": "polite" });
  const form = h("form", { novalidate: true },
    field("Kind of help", kind), queue,
    field("Title", input("title", { required: true, maxlength: "200" })),
    field("Customer", input("customer", { required: true })),
    h("div", { class: "grid" }, field("Deal", input("dealName")), field("Deal value", h("input", { type: "number", name: "dealValue", id: "f-dealValue", min: "0", step: "any" }))),
    field("What was committed to the customer", h("textarea", { name: "commitment", id: "f-commitment" })),
    field("Details", h("textarea", { name: "details", id: "f-details", required: true }), "what the team needs to start"),
    field("Needed by", h("input", { type: "datetime-local", name: "neededBy", id: "f-neededBy", required: true }), "your local time"),
    field("Priority", priority), rushField,
    h("section", { class: "card", "aria-labelledby": "h-brief" }, h("h2", { id: "h-brief" }, "Brief"), status, checks),
    h("div", {}, h("button", { type: "submit" }, "Submit request")));
  const update = () => {
    queue.textContent = "Goes to the queue of: " + KINDS[kind.value][1];
    rushField.hidden = priority.value !== "RUSH";
    const results = briefChecks(form);
    checks.replaceChildren(...results.map(([ok, text]) => h("li", { class: ok ? "done" : "" }, (ok ? "✓ " : "✗ ") + text)));
    const missing = results.filter(([ok]) => !ok).length;
    status.textContent = missing ? `Brief incomplete: ${missing} gap${missing > 1 ? "s" : ""}. A complete brief earns you points and gets faster help.` : "Brief complete.";
    status.className = missing ? "" : "ok";
    form.dataset.gaps = String(missing);
  };
  form.addEventListener("input", update);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = (name) => form.elements[name].value.trim();
    const missing = ["title", "customer", "details", "neededBy"].filter(n => !v(n))
      .map(n => ({ field: n, message: `${words(n === "neededBy" ? "needed_by" : n)} is required` }));
    if (missing.length) return showErrors(form, missing);
    const input = { kind: v("kind"), title: v("title"), customer: v("customer"), details: v("details"),
                    dealName: v("dealName") || null, dealValue: v("dealValue") ? Number(v("dealValue")) : null,
                    commitment: v("commitment") || null, neededBy: new Date(v("neededBy")).toISOString(),
                    priority: v("priority"), rushReason: v("priority") === "RUSH" ? v("rushReason") || null : null,
                    idempotencyKey: form.dataset.key || (form.dataset.key = crypto.randomUUID()) };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const payload = await mutate(`mutation($input: SubmitRequestInput!) { submitRequest(input: $input) {
        request { id number } errors { field code message } } }`, { input });
      if (payload.errors.length) return showErrors(form, payload.errors);
      toast(`Request #${payload.request.number} submitted`);
      ctx.go("#/requests/" + payload.request.id);
    } catch (error) {
      showErrors(form, [{ message: error.message }]);
    } finally { button.disabled = false; }
  });
  show(main, h("h1", {}, "New request"), form);
  update();
}

// -- My requests ---------------------------------------------------------------------------

export async function myRequests(main, ctx) {
  const open = ctx.query.get("all") !== "1";
  const read = async (after) => (await gql(`query($f: RequestFilter, $after: String) { requests(filter: $f, first: 50, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id number title status priority neededBy customer submittedAt } } } }`,
    { f: { requesterId: ctx.me.id, ...(open ? { open: true } : {}) }, after })).requests;
  const item = (r) => h("li", {},
    h("div", { class: "row" }, h("a", { href: "#/requests/" + r.id }, `#${r.number} ${r.title}`), pills(r)),
    h("div", { class: "muted" }, r.customer, " · needed by ", timeEl(r.neededBy)));
  const page = await read(null);
  const list = h("ul", { class: "list", id: "my-requests" }, page.edges.map(e => item(e.node)));
  let next = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
  const more = h("button", { type: "button", class: "secondary", hidden: !next, onclick: async () => {
    const further = await read(next);
    list.append(...further.edges.map(e => item(e.node)));
    next = further.pageInfo.hasNextPage ? further.pageInfo.endCursor : null;
    more.hidden = !next;
  } }, "Show older ones");
  show(main, h("h1", {}, "My requests"),
    h("p", { class: "row" }, open ? h("a", { href: "#/requests?all=1" }, "Show closed and cancelled too") : h("a", { href: "#/requests" }, "Show open only"),
      h("a", { class: "button", href: "#/new" }, "New request")),
    page.edges.length ? [list, h("p", {}, more)] : h("p", { class: "muted" }, open ? "No open requests." : "No requests yet."));
}

// -- A request -----------------------------------------------------------------------------

const ACTIONS = {
  acknowledge: ["Acknowledge", "mutation($id: ID!) { acknowledgeRequest(id: $id) { request { id } errors { field code message } } }"],
  start: ["Start work", "mutation($id: ID!) { startRequest(id: $id) { request { id } errors { field code message } } }"],
};

function textAction(title, name, label, mutation, variable, after) {
  const text = h("textarea", { name: variable, id: "f-" + name, required: true });
  const extra = after || null;
  const form = h("form", { class: "card", "aria-labelledby": "h-" + name, "data-action": name },
    h("h2", { id: "h-" + name }, title), extra, field(label, text), h("div", {}, h("button", { type: "submit" }, title)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelector("button[type=submit]").disabled = true;
    try {
      const payload = await mutation(text.value.trim(), form);
      if (payload.errors.length) showErrors(form, payload.errors);
      else { text.value = ""; toast("Done"); }
    } catch (error) { showErrors(form, [{ message: error.message }]); }
    finally { form.querySelector("button[type=submit]").disabled = false; }
  });
  return form;
}

function assignForm(r, act) {
  const select = h("select", { name: "assigneeIds", id: "f-assignee" }, h("option", { value: "" }, "Loading colleagues…"));
  const form = h("form", { class: "card", "data-action": "assign", "aria-labelledby": "h-assign" }, h("h2", { id: "h-assign" }, "Assign"),
    field("Colleague in the " + words(r.department) + " queue", select), h("div", {}, h("button", { type: "submit", class: "secondary" }, "Assign")));
  gql(`query($d: Department) { people(department: $d, role: SUPPORT, first: 100) { edges { node { id name } } } }`, { d: r.department })
    .then(data => select.replaceChildren(h("option", { value: "" }, "Choose…"),
      ...data.people.edges.map(({ node }) => h("option", { value: node.id }, node.name))))
    .catch(error => showErrors(form, [{ message: error.message }]));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!select.value) return showErrors(form, [{ field: "assigneeIds", message: "choose a colleague" }]);
    try {
      const ids = [...new Set([...r.assignees.map(x => x.id), select.value])];
      const p = await act(`mutation($id: ID!, $a: [ID!]!) { assignRequest(id: $id, assigneeIds: $a) { request { id } errors { field code message } } }`, { a: ids });
      if (p.errors.length) showErrors(form, p.errors); else toast("Assigned");
    } catch (error) { showErrors(form, [{ message: error.message }]); }
  });
  return form;
}

export async function requestPage(main, ctx) {
  const id = ctx.params[0];
  const { me } = ctx;
  const read = async () => (await gql(`query($id: ID!) { request(id: $id) { ${REQUEST_FIELDS} } }`, { id })).request;
  let request = await read();
  if (!request) {
    show(main, h("h1", {}, "Request not found"), h("p", {}, "It does not exist, or it is not one you can see. ", h("a", { href: "#/requests" }, "My requests")));
    return;
  }
  const act = async (mutation, variables) => {
    const payload = await mutate(mutation, { id, ...variables });
    if (!payload.errors.length && payload.request) { request = await read(); draw(); }
    return payload;
  };
  const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "Timeline" });
  const actions = h("div", { class: "grid", id: "actions" });
  const head = h("div");

  function draw() {
    const r = request;
    const mine = r.requester && r.requester.id === me.id;
    head.replaceChildren(
      h("h1", {}, `#${r.number} ${r.title}`), h("p", {}, pills(r)),
      h("dl", { class: "facts" },
        h("dt", {}, "Kind"), h("dd", {}, KINDS[r.kind][0], " → ", words(r.department), " queue"),
        h("dt", {}, "Requester"), h("dd", {}, personLink(r.requester)),
        h("dt", {}, "Customer"), h("dd", {}, r.customer, r.dealName ? ` · ${r.dealName}` : "", r.dealValue != null ? ` · ${r.dealValue.toLocaleString("en")}` : ""),
        h("dt", {}, "Needed by"), h("dd", { id: "needed-by" }, timeEl(r.neededBy)),
        r.rushReason ? [h("dt", {}, "Rush because"), h("dd", {}, r.rushReason)] : null,
        h("dt", {}, "Committed to the customer"), h("dd", {}, r.commitment || h("span", { class: "muted" }, "not said")),
        h("dt", {}, "Details"), h("dd", {}, r.details),
        h("dt", {}, "Assignees"), h("dd", { id: "assignees" }, r.assignees.length ? r.assignees.map((p, i) => [i ? ", " : "", personLink(p)]) : "nobody yet"),
        h("dt", {}, "Brief"), h("dd", {}, r.briefComplete ? "complete" : "gaps: " + r.briefGaps.join("; ")),
        r.outcome ? [h("dt", {}, "Outcome"), h("dd", { id: "outcome" }, words(r.outcome))] : null));
    timeline.replaceChildren(...r.timeline.map(e => h("li", {},
      h("div", {}, h("strong", {}, words(e.type)), " · ", e.actor ? e.actor.name : "Inside Track", " · ", timeEl(e.at)),
      e.text ? h("div", {}, e.text) : null)));
    // The action forms are rebuilt only when what can be done changed (not what someone is typing).
    const key = [r.status, ...r.assignees.map(p => p.id)].join("|");
    if (actions.dataset.key === key) return;
    actions.dataset.key = key;
    const forms = [];
    const open = OPEN.includes(r.status);
    if (!mine) {
      for (const [name, [label, mutation]] of Object.entries(ACTIONS)) {
        if ((name === "acknowledge" && r.status === "SUBMITTED") || (name === "start" && r.status === "ACKNOWLEDGED")) {
          forms.push(h("div", { class: "card" }, h("button", { type: "button", "data-action": name, onclick: async (event) => {
            event.target.disabled = true;
            try { const p = await act(mutation); if (p.errors.length) toast(p.errors[0].message); else toast(label + ": done"); }
            catch (error) { toast(error.message); } finally { event.target.disabled = false; }
          } }, label)));
        }
      }
      const assignable = open && r.status !== "DELIVERED";  // assigning is for requests still being worked
      if (assignable && !r.assignees.some(p => p.id === me.id) && me.role !== "REP") {
        forms.push(h("div", { class: "card" }, h("button", { type: "button", class: "secondary", "data-action": "assign-me", onclick: async () => {
          const p = await act(`mutation($id: ID!, $a: [ID!]!) { assignRequest(id: $id, assigneeIds: $a) { request { id } errors { field code message } } }`,
                              { a: [...r.assignees.map(x => x.id), me.id] });
          toast(p.errors.length ? p.errors[0].message : "Assigned to you");
        } }, "Assign to me")));
      }
      if (assignable && me.role !== "REP") forms.push(assignForm(r, act));
      if (["ACKNOWLEDGED", "IN_PROGRESS"].includes(r.status)) {
        forms.push(textAction("Ask for information", "ask", "Your question", (q) => act(
          `mutation($id: ID!, $q: String!) { requestInfo(id: $id, question: $q) { request { id } errors { field code message } } }`, { q }), "question"));
      }
      if (r.status === "IN_PROGRESS" && r.assignees.some(p => p.id === me.id)) {
        forms.push(textAction("Deliver", "deliver", "Delivery note (optional)", (note) => act(
          `mutation($id: ID!, $note: String) { deliverRequest(id: $id, note: $note) { request { id } errors { field code message } } }`, { note: note || null }), "note"));
      }
    }
    if (mine && r.status === "WAITING_ON_REP") {
      const question = [...r.timeline].reverse().find(e => e.type === "info_requested");
      forms.push(textAction("Answer the question", "answer", "Your answer", (a) => act(
        `mutation($id: ID!, $a: String!) { provideInfo(id: $id, answer: $a) { request { id } errors { field code message } } }`, { a }), "answer",
        question && question.text ? h("p", { class: "alert" }, `${question.actor ? question.actor.name : "The team"} asks: ${question.text}`) : null));
    }
    if (mine && open) {
      forms.push(textAction("Post a deal update", "update", "What changed with the customer", (text) => act(
        `mutation($id: ID!, $t: String!) { postDealUpdate(id: $id, text: $t) { request { id } errors { field code message } } }`, { t: text }), "text"));
    }
    if (mine && r.status === "DELIVERED") {
      const outcome = h("select", { name: "outcome", id: "f-outcome" }, ["WON", "LOST", "NO_DECISION", "NOT_APPLICABLE"].map(o => h("option", { value: o }, words(o))));
      const note = h("textarea", { name: "note", id: "f-close-note" });
      const form = h("form", { class: "card", "data-action": "close", "aria-labelledby": "h-close" }, h("h2", { id: "h-close" }, "Close the loop"),
        h("p", { class: "muted" }, "Tell the team how the deal ended."), field("Outcome", outcome), field("Note (optional)", note),
        h("div", {}, h("button", { type: "submit" }, "Close request")));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const p = await act(`mutation($id: ID!, $o: Outcome!, $n: String) { closeRequest(id: $id, outcome: $o, note: $n) { request { id } errors { field code message } } }`,
                              { o: outcome.value, n: note.value.trim() || null });
          if (p.errors.length) showErrors(form, p.errors); else toast("Closed: thank you for closing the loop");
        } catch (error) { showErrors(form, [{ message: error.message }]); }
      });
      forms.push(form);
    }
    if (mine && ["DELIVERED", "CLOSED"].includes(r.status) && r.assignees.length) {
      forms.push(h("div", { class: "card" }, h("h2", {}, "Thank the helpers"),
        h("p", {}, "Send ", r.assignees.map(p => p.name).join(", "), " a kudos for this request."),
        h("a", { class: "button", id: "thank-helpers", href: `#/kudos?to=${r.assignees.map(p => p.id).join(",")}&request=${r.id}` }, "☕ Thank them with a coffee")));
    }
    if (mine && open && r.status !== "DELIVERED") {
      const cancel = textAction("Cancel the request", "cancel", "Why is it no longer needed?", (reason) => act(
        `mutation($id: ID!, $reason: String!) { cancelRequest(id: $id, reason: $reason) { request { id } errors { field code message } } }`, { reason }), "reason");
      cancel.querySelector("button[type=submit]").className = "secondary";  // not the page's main action
      forms.push(cancel);
    }
    if (open) {
      forms.push(textAction("Comment", "comment", "Comment", (text) => act(
        `mutation($id: ID!, $t: String!) { commentOnRequest(id: $id, text: $t) { request { id } errors { field code message } } }`, { t: text }), "text"));
    }
    actions.replaceChildren(...forms);
  }
  show(main, head, h("section", { "aria-labelledby": "h-actions" }, h("h2", { id: "h-actions", class: "muted" }, "Actions"), actions),
    h("section", { "aria-labelledby": "h-timeline" }, h("h2", { id: "h-timeline" }, "Timeline ", h("span", { class: "muted", id: "live-note" }, "(live)")), timeline));
  draw();
  ctx.track(live.subscribe(`subscription($id: ID!) { requestChanged(id: $id) { ${REQUEST_FIELDS} } }`, { id },
    (data) => {
      const before = request.timeline.length;
      request = data.requestChanged;
      draw();
      const latest = request.timeline[request.timeline.length - 1];
      if (request.timeline.length > before && latest && (!latest.actor || latest.actor.id !== me.id)) {
        toast(`${words(latest.type)}${latest.actor ? " by " + latest.actor.name : ""}${latest.text ? ": " + latest.text : ""}`);  // said to screen readers too
      }
    },
    async () => { request = await read(); draw(); }));
}
