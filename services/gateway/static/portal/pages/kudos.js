import { gql, live, mutate } from "../api.js";
import { GESTURES, field, h, personLink, show, showErrors, timeEl, toast, words } from "../ui.js";

const KUDOS = "id message gesture values private createdAt cardUrl thumbnailUrl addOnCount giver { id name } recipients { id name }";

function kudosCard(k, me) {
  return h("li", { class: "kudos card", "data-kudos": k.id },
    h("img", { src: k.cardUrl, alt: `Kudos card: ${k.giver ? k.giver.name : "someone"} thanks ${k.recipients.map(p => p.name).join(", ")}: ${k.message}`,
               width: "1200", height: "630", loading: "lazy" }),
    h("div", { class: "row" }, GESTURES[k.gesture], " from ", personLink(k.giver), " to ",
      k.recipients.map((p, i) => [i ? ", " : "", personLink(p)]), " · ", timeEl(k.createdAt), k.private ? " · private" : "",
      k.addOnCount ? ` · ${k.addOnCount} add-on${k.addOnCount > 1 ? "s" : ""}` : ""),
    me && k.giver && k.giver.id !== me.id && !k.recipients.some(p => p.id === me.id)
      ? h("button", { type: "button", class: "secondary", onclick: async (event) => {
          event.target.disabled = true;
          try {
            const p = await mutate(`mutation($id: ID!) { addOnKudos(id: $id) { kudos { id addOnCount } errors { code message } } }`, { id: k.id });
            toast(p.errors.length ? p.errors[0].message : "+1 added");
          } catch (error) { toast(error.message); }
        } }, "+1 Add on") : null);
}

export async function giveKudos(main, ctx) {
  const { me } = ctx;
  const preset = (ctx.query.get("to") || "").split(",").filter(Boolean);
  const requestId = ctx.query.get("request");
  const data = await gql(`{ me { kudosAllowance { left monthlyAllowance resetsAt } } companyValues }`);
  const recipients = new Map();
  for (const id of preset) {
    const p = (await gql(`query($id: ID!) { person(id: $id) { id name } }`, { id })).person;
    if (p) recipients.set(p.id, p);
  }
  const chips = h("div", { class: "chips", id: "recipients", "aria-live": "polite" });
  const results = h("ul", { class: "list", id: "people-results" });
  const search = h("input", { type: "search", id: "f-search", name: "to", autocomplete: "off", placeholder: "Type a name" });
  const drawChips = () => chips.replaceChildren(...[...recipients.values()].map(p => h("span", { class: "chip" }, p.name, " ",
    h("button", { type: "button", class: "link", "aria-label": `Remove ${p.name}`, onclick: () => { recipients.delete(p.id); drawChips(); } }, "×"))));
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = search.value.trim();
      if (!text) return results.replaceChildren();
      const found = await gql(`query($s: String) { people(search: $s, first: 8) { edges { node { id name title department } } } }`, { s: text });
      const people = found.people.edges.map(e => e.node).filter(p => p.id !== me.id);
      results.replaceChildren(...(people.length ? people.map(p => h("li", {}, h("button", { type: "button", class: "secondary", onclick: () => {
        recipients.set(p.id, p); drawChips(); results.replaceChildren(); search.value = ""; search.focus();
      } }, `Add ${p.name}`), " ", h("span", { class: "muted" }, [p.title, words(p.department)].filter(Boolean).join(" · "))))
        : [h("li", { class: "muted" }, "Nobody found by that name.")]));
    }, 200);
  });
  const allowance = data.me.kudosAllowance;
  const message = h("textarea", { name: "message", id: "f-message", maxlength: "500", required: true });
  const form = h("form", { novalidate: true },
    h("p", { id: "allowance" }, allowance ? `You have ${allowance.left} of ${allowance.monthlyAllowance} kudos left this month.` : ""),
    h("div", { class: "field" }, h("label", { for: "f-search" }, "To"), chips, search, results),
    h("fieldset", {}, h("legend", {}, "Gesture"), Object.entries(GESTURES).map(([value, label], i) =>
      h("label", {}, h("input", { type: "radio", name: "gesture", value, checked: (requestId ? value === "COFFEE" : i === 0) }), label))),
    h("fieldset", {}, h("legend", {}, "Company values"), data.companyValues.map(v =>
      h("label", {}, h("input", { type: "checkbox", name: "values", value: v }), words(v)))),
    field("Message", message, "1–500 characters"),
    h("label", {}, h("input", { type: "checkbox", name: "private" }), " Private (only you, them and their managers see it)"),
    h("div", {}, h("button", { type: "submit" }, "Give kudos")));
  const result = h("div", { id: "given", "aria-live": "polite" });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!recipients.size) return showErrors(form, [{ field: "to", message: "Choose at least one colleague to thank." }]);
    if (!message.value.trim()) return showErrors(form, [{ field: "message", message: "Write a message (1–500 characters)." }]);
    const input = { to: [...recipients.keys()], message: message.value.trim(),
                    gesture: form.querySelector("input[name=gesture]:checked").value,
                    values: [...form.querySelectorAll("input[name=values]:checked")].map(i => i.value),
                    private: form.elements.private.checked, requestId: requestId || null,
                    idempotencyKey: form.dataset.key || (form.dataset.key = crypto.randomUUID()) };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const p = await mutate(`mutation($input: GiveKudosInput!) { giveKudos(input: $input) { kudos { ${KUDOS} } errors { field code message } } }`, { input });
      if (p.errors.length) { delete form.dataset.key; return showErrors(form, p.errors); }
      delete form.dataset.key;
      toast("Kudos sent!");
      result.replaceChildren(h("h2", {}, "Your kudos"), h("ul", { class: "list" }, kudosCard(p.kudos, me)),
        h("p", {}, h("a", { href: p.kudos.cardUrl }, "Open the card to share it")));
      const left = (await gql(`{ me { kudosAllowance { left monthlyAllowance } } }`)).me.kudosAllowance;
      if (left) document.getElementById("allowance").textContent = `You have ${left.left} of ${left.monthlyAllowance} kudos left this month.`;
      message.value = "";
    } catch (error) { showErrors(form, [{ message: error.message }]); }
    finally { button.disabled = false; }
  });
  show(main, h("h1", {}, "Give kudos"), requestId ? h("p", { class: "note" }, "Thanking the helpers of a request.") : null, form, result);
  drawChips();
}

export async function feed(main, ctx) {
  const list = h("ul", { class: "list", id: "feed" });
  const read = async (after) => (await gql(`query($after: String) { kudosFeed(first: 20, after: $after) {
    pageInfo { hasNextPage endCursor } edges { node { ${KUDOS} } } } }`, { after })).kudosFeed;
  const page = await read(null);
  list.replaceChildren(...page.edges.map(e => kudosCard(e.node, ctx.me)));
  if (!page.edges.length) list.replaceChildren(h("li", { class: "muted" }, "No kudos yet: be the first to thank someone."));
  let next = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
  const more = h("button", { type: "button", class: "secondary", hidden: !next, onclick: async () => {
    const further = await read(next);
    list.append(...further.edges.map(e => kudosCard(e.node, ctx.me)));
    next = further.pageInfo.hasNextPage ? further.pageInfo.endCursor : null;
    more.hidden = !next;
  } }, "Show older kudos");
  show(main, h("h1", {}, "Kudos feed"), list, h("p", {}, more));
  ctx.track(live.subscribe(`subscription { kudosGiven { ${KUDOS} } }`, {}, (d) => {
    if (list.querySelector("li.muted")) list.replaceChildren();
    if (!list.querySelector(`[data-kudos="${d.kudosGiven.id}"]`)) list.prepend(kudosCard(d.kudosGiven, ctx.me));
  }));
}
