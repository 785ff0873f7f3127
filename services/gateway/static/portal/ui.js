// Small helpers the pages share: building elements, words for enum values, times, messages.

const CONFIG = window.PORTAL_CONFIG || {};
const loadedAt = performance.now();
const serverNow = CONFIG.now ? Date.parse(CONFIG.now) : Date.now();

/** The company's "now": the services' clock when the page was served, moved on since. */
export function now() { return new Date(serverNow + (performance.now() - loadedAt)); }
export const config = CONFIG;

/** h("p", {class: "x", onclick: f}, "text", child, ...): an element; text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function words(value) {
  if (!value) return "";
  const text = String(value).replaceAll("_", " ").toLowerCase();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export const KINDS = {
  PRESALES_TECHNICAL: ["Technical pre-sales support", "Pre-sales"], MARKETING: ["Marketing leads / programs", "Marketing"],
  PRICING: ["Pricing a proposal", "Pricing"], LEGAL_REVIEW: ["Legal contract review", "Legal"],
  ORDER_ENTRY: ["Order entry", "Order desk"], CUSTOMIZATION: ["Product customisation", "Product"],
  POST_SALE_SERVICE: ["Post-sale service", "Customer service"], EXCEPTION: ["Exception (something special)", "Sales (your manager's team)"],
};
export const GESTURES = { THANKS: "🙏 Thanks", COFFEE: "☕ Coffee", LUNCH: "🍽️ Lunch", FLOWERS: "💐 Flowers", HIGH_FIVE: "🙌 High five" };
export const OPEN = ["SUBMITTED", "ACKNOWLEDGED", "IN_PROGRESS", "WAITING_ON_REP", "DELIVERED"];

export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString("en-GB", { timeZone: CONFIG.timezone || undefined, weekday: "short", day: "numeric",
                                                 month: "short", hour: "2-digit", minute: "2-digit" });
}

export function timeEl(iso) { return h("time", { datetime: iso }, when(iso)); }

export function overdue(request) {
  return OPEN.slice(0, 4).includes(request.status) && Date.parse(request.neededBy) < now().getTime();
}

/** The pills of a request: status, priority, overdue. */
export function pills(request) {
  return h("span", { class: "row" },
    h("span", { class: "pill status" }, words(request.status)),
    request.priority !== "NORMAL" ? h("span", { class: "pill " + request.priority.toLowerCase() }, words(request.priority)) : null,
    overdue(request) ? h("span", { class: "pill overdue" }, "Overdue") : null);
}

/** Put ``children`` in ``container`` (nulls and falses left out, as h() does). */
export function show(container, ...children) {
  container.replaceChildren(...children.flat(Infinity).filter(c => c !== null && c !== undefined && c !== false));
}

export function loading(main, text = "Loading…") { main.replaceChildren(h("p", { class: "muted" }, text)); }

export function problem(message) { return h("p", { class: "alert", role: "alert" }, message); }

let toastTimer = null;
export function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), 5000);
}

/** Show a payload's refusals next to the fields they name (or at the top of the form). */
export function showErrors(form, errors) {
  form.querySelectorAll(".field-error").forEach(e => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach(e => e.removeAttribute("aria-invalid"));
  let first = null;
  for (const error of errors) {
    const input = error.field ? form.querySelector(`[name="${error.field}"]`) : null;
    const id = "err-" + Math.random().toString(36).slice(2);
    const note = h("p", { class: "error field-error", id, role: "alert" }, error.message);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", id);
      (input.closest(".field") || input.parentElement).append(note);
      first = first || input;
    } else {
      form.prepend(note);
    }
  }
  if (first) first.focus();
}

export function field(labelText, control, hint) {
  const id = control.id || (control.id = "f-" + (control.name || Math.random().toString(36).slice(2)));
  return h("div", { class: "field" }, h("label", { for: id }, labelText, hint ? h("span", { class: "hint" }, " — " + hint) : null), control);
}

export function personLink(person) {
  return person ? h("a", { href: "#/people/" + person.id }, person.name) : "someone";
}
