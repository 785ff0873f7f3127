// Insights for managers and admins: the team's queues, reps and recognition in the current
// period, as small bar charts drawn here (inline SVG, nothing from outside) with the figures
// as text beside them. The points service decides who may see what (FORBIDDEN for others).
import { gql } from "../api.js";
import { field, h, personLink, show, words } from "../ui.js";

const PERIODS = ["WEEK", "MONTH", "QUARTER", "ALL"];
const PERIOD_WORDS = { WEEK: "This week", MONTH: "This month", QUARTER: "This quarter", ALL: "All time" };
const DEPARTMENTS = ["SALES", "PRESALES", "PRICING", "LEGAL", "ORDER_DESK", "MARKETING", "PRODUCT", "CUSTOMER_SERVICE"];
const REP = "person { id name } score requests rushShare completeBriefShare dealUpdates weeksWithDealUpdate";
const PERSON = "id name title department";
const QUERY = `query($p: Period!, $d: Department) { insights(period: $p, department: $d) { period key
  departments { department requestsReceived acknowledged delivered ackMedianHours ackP90Hours deliverMedianHours deliverP90Hours
                onTimeShare rushShare rushShortNoticeShare infoLoopsPerRequest closedLoopShare }
  reps { ${REP} } repsCount repsPageInfo { hasNextPage endCursor }
  recognition { people gaveShare receivedShare kudosPerPerson topValues { value count }
                unrecognized { ${PERSON} } unrecognizedCount unrecognizedPageInfo { hasNextPage endCursor } } } }`;
// The next page of one of the two lists that grow with the team (50 a page: a company's admin
// sees thousands of people).
const MORE_REPS = `query($p: Period!, $d: Department, $a: String) { insights(period: $p, department: $d, repsAfter: $a, unrecognizedFirst: 1) {
  reps { ${REP} } repsPageInfo { hasNextPage endCursor } } }`;
const MORE_UNRECOGNIZED = `query($p: Period!, $d: Department, $a: String) { insights(period: $p, department: $d, repsFirst: 1, unrecognizedAfter: $a) {
  recognition { unrecognized { ${PERSON} } unrecognizedPageInfo { hasNextPage endCursor } } } }`;
const SERIES = ["#312e81", "#0e7490"];  // dark enough for text beside them; the legend names them

const pct = (x) => x == null ? "–" : `${Math.round(x * 100)}%`;
const hours = (x) => x == null ? "–" : `${Number(x.toFixed(2))} h`;
const num = (x) => x == null ? "–" : String(Number(x.toFixed(2)));

/** A horizontal bar chart in SVG: one group per row (its label above its bars), one bar per
 *  series, the value written after each bar. `max`: the scale's end (the largest value if not given). */
function barChart({ id, title, rows, series = [""], format = num, max = null }) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const W = 300, LABEL = 18, BAR = 12, GAP = 3, ROW_GAP = 10, VALUE = 62;
  const top = Math.max(max ?? 0, ...rows.flatMap(r => r.values.map(v => v ?? 0))) || 1;
  const rowHeight = LABEL + series.length * (BAR + GAP) + ROW_GAP;
  const height = rows.length * rowHeight;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", class: "chart",
                             "aria-label": `${title}: ` + rows.map(r => `${r.label} ${r.values.map(format).join(" / ")}`).join("; ") });
  rows.forEach((r, i) => {
    const y = i * rowHeight;
    chart.append(svg("text", { x: 0, y: y + 13, class: "chart-label" }, r.label));
    r.values.forEach((v, s) => {
      const by = y + LABEL + s * (BAR + GAP);
      const w = v == null ? 0 : Math.max(v > 0 ? 2 : 0, (W - VALUE) * v / top);
      chart.append(svg("rect", { x: 0, y: by, width: W - VALUE, height: BAR, fill: "#e5e7eb", rx: 2 }));
      if (w) chart.append(svg("rect", { x: 0, y: by, width: w, height: BAR, fill: SERIES[s % SERIES.length], rx: 2 }));
      chart.append(svg("text", { x: W - VALUE + 6, y: by + BAR - 2, class: "chart-value" }, v == null ? "no data" : format(v)));
    });
  });
  const legend = series.length > 1 ? h("p", { class: "legend" }, series.map((name, s) =>
    h("span", {}, h("span", { class: "swatch", style: `background:${SERIES[s]}` }), name))) : null;
  return h("figure", { class: "card chart-card", id },
    h("figcaption", {}, h("strong", {}, title)), legend, rows.length ? chart : h("p", { class: "muted" }, "Nothing yet."));
}

function stat(value, label, testId) {
  return h("div", { class: "card" }, h("div", { class: "stat", "data-test": testId }, value), label);
}

export async function insights(main, ctx) {
  const period = PERIODS.includes(ctx.query.get("period")) ? ctx.query.get("period") : "MONTH";
  const department = DEPARTMENTS.includes(ctx.query.get("department")) ? ctx.query.get("department") : "";
  const select = (name, options, current, label) => field(label, h("select", { name, id: "f-" + name, onchange: (event) => {
    const q = new URLSearchParams(ctx.query);
    if (event.target.value) q.set(name, event.target.value); else q.delete(name);
    ctx.go("#/insights?" + q.toString());
  } }, options.map(([value, text]) => h("option", { value, selected: value === current }, text))));
  const controls = h("div", { class: "grid" },
    select("period", PERIODS.map(p => [p, PERIOD_WORDS[p]]), period, "Period"),
    select("department", [["", "All my departments"], ...DEPARTMENTS.map(d => [d, words(d)])], department, "Department"));
  let data;
  try {
    data = (await gql(QUERY, { p: period, d: department || null })).insights;
  } catch (error) {
    if (error.code !== "FORBIDDEN") throw error;  // the portal's usual "try again" for the rest
    show(main, h("h1", {}, "Insights"),
      h("p", { class: "alert", role: "alert", id: "insights-refused" },
        "Insights are not available to you. Inside Track says: ", error.detail || error.message, "."),
      h("p", {}, h("a", { href: "#/" }, "Back to Home")));
    return;
  }
  const depts = data.departments;
  const busy = depts.filter(d => d.requestsReceived || d.delivered || d.acknowledged);
  const rec = data.recognition;
  const label = (d) => words(d.department);

  const queues = depts.length ? [
    h("div", { class: "grid charts" },
      barChart({ id: "chart-received", title: "Requests received", rows: depts.map(d => ({ label: label(d), values: [d.requestsReceived] })), format: String }),
      barChart({ id: "chart-ack", title: "Time to acknowledge (business hours)", series: ["median", "p90"], format: hours,
                 rows: depts.map(d => ({ label: label(d), values: [d.ackMedianHours, d.ackP90Hours] })) }),
      barChart({ id: "chart-deliver", title: "Time to deliver (business hours)", series: ["median", "p90"], format: hours,
                 rows: depts.map(d => ({ label: label(d), values: [d.deliverMedianHours, d.deliverP90Hours] })) }),
      barChart({ id: "chart-on-time", title: "Delivered on time", format: pct, max: 1, rows: depts.map(d => ({ label: label(d), values: [d.onTimeShare] })) }),
      barChart({ id: "chart-rush", title: "Rush requests", series: ["all rushes", "with under a day's notice"], format: pct, max: 1,
                 rows: depts.map(d => ({ label: label(d), values: [d.rushShare, d.rushShortNoticeShare] })) }),
      barChart({ id: "chart-info", title: "Info loops per request", rows: depts.map(d => ({ label: label(d), values: [d.infoLoopsPerRequest] })) }),
      barChart({ id: "chart-closed", title: "Loop closed with an outcome (of deliveries)", format: pct, max: 1,
                 rows: depts.map(d => ({ label: label(d), values: [d.closedLoopShare] })) })),
    h("details", {}, h("summary", {}, "The department figures as a table"),
      h("table", { class: "board stack", id: "departments" },
        h("thead", {}, h("tr", {}, ["Department", "Received", "Ack. median / p90", "Delivery median / p90", "On time", "Rush / short notice",
                                    "Info loops", "Closed loop"].map(t => h("th", { scope: "col" }, t)))),
        h("tbody", {}, depts.map(d => h("tr", {},
          cell("Department", label(d)), cell("Received", d.requestsReceived),
          cell("Ack. median / p90", `${hours(d.ackMedianHours)} / ${hours(d.ackP90Hours)}`),
          cell("Delivery median / p90", `${hours(d.deliverMedianHours)} / ${hours(d.deliverP90Hours)}`),
          cell("On time", pct(d.onTimeShare)), cell("Rush / short notice", `${pct(d.rushShare)} / ${pct(d.rushShortNoticeShare)}`),
          cell("Info loops", num(d.infoLoopsPerRequest)), cell("Closed loop", pct(d.closedLoopShare))))))),
  ] : [h("p", { class: "muted" }, "No department to show for this choice.")];

  // Reps come highest score first, a page at a time; the first page holds the top score.
  const topScore = Math.max(1, ...data.reps.map(r => r.score));
  const repRow = (r) => h("tr", {},
    cell("Rep", personLink(r.person)),
    cell("Score", h("span", { class: "score" }, h("span", { class: "bar", "aria-hidden": "true" },
      h("span", { style: `width:${Math.round(100 * Math.min(1, Math.max(0, r.score) / topScore))}%` })), h("span", {}, r.score))),
    cell("Requests", r.requests), cell("Rush share", pct(r.rushShare)), cell("Complete briefs", pct(r.completeBriefShare)),
    cell("Deal updates", `${r.dealUpdates} (in ${r.weeksWithDealUpdate} week${r.weeksWithDealUpdate === 1 ? "" : "s"})`));
  const repBody = h("tbody", {}, data.reps.map(repRow));
  const repsShown = h("p", { class: "muted", id: "reps-shown" });
  let shownReps = data.reps.length;
  const countReps = () => { repsShown.textContent = `${shownReps} of ${data.repsCount} reps, highest score first.`; };
  countReps();
  const moreReps = more("more-reps", "Show more reps", data.repsPageInfo, async (after) => {
    const page = (await gql(MORE_REPS, { p: period, d: department || null, a: after })).insights;
    page.reps.forEach(r => repBody.append(repRow(r)));
    shownReps += page.reps.length;
    countReps();
    return page.repsPageInfo;
  });
  const repTable = data.reps.length ? h("div", {}, h("table", { class: "board stack", id: "reps" },
    h("caption", { class: "muted" }, "Internal-selling score: points from the rep rules in the period; rush share: rushes with under a day's notice."),
    h("thead", {}, h("tr", {}, ["Rep", "Score", "Requests", "Rush share", "Complete briefs", "Deal updates"].map(t => h("th", { scope: "col" }, t)))),
    repBody), repsShown, moreReps)
    : h("p", { class: "muted" }, "No reps on the team for this choice.");

  const chip = (p) => h("li", { class: "chip" }, personLink(p),
    h("a", { href: "#/kudos?to=" + p.id, class: "hint", "aria-label": `Give ${p.name} kudos` }, " · thank"));
  const chips = h("ul", { class: "chips list" }, rec.unrecognized.map(chip));
  const moreUnrecognized = more("more-unrecognized", "Show more people", rec.unrecognizedPageInfo, async (after) => {
    const page = (await gql(MORE_UNRECOGNIZED, { p: period, d: department || null, a: after })).insights.recognition;
    page.unrecognized.forEach(p => chips.append(chip(p)));
    return page.unrecognizedPageInfo;
  });
  const unrecognized = rec.unrecognizedCount
    ? h("div", { class: "attention", id: "unrecognized" },
        h("p", {}, h("strong", {}, `${rec.unrecognizedCount} of ${rec.people} on the team had no recognition ${PERIOD_WORDS[period].toLowerCase()}`),
          " — a word of thanks may be due:"),
        chips, moreUnrecognized)
    : h("p", { class: "ok", id: "unrecognized" }, rec.people ? "Everyone on the team was recognised in this period." : "");

  show(main, h("h1", {}, "Insights"),
    h("p", { class: "muted", id: "insights-scope" }, `${PERIOD_WORDS[period]} (${data.key}) · `,
      department ? words(department) : "your team", ` · ${rec.people} ${rec.people === 1 ? "person" : "people"}`),
    controls,
    h("h2", {}, "Queues"),
    depts.length && !busy.length ? h("p", { class: "muted" }, "No requests in this period yet.") : null,
    queues,
    h("h2", {}, "Reps"),
    repTable,
    h("h2", {}, "Recognition"),
    h("div", { class: "grid" },
      stat(pct(rec.gaveShare), "of the team gave kudos", "gave-share"),
      stat(pct(rec.receivedShare), "of the team received kudos", "received-share"),
      stat(num(rec.kudosPerPerson), "kudos received per person", "kudos-per-person")),
    unrecognized,
    rec.topValues.length
      ? h("div", { class: "grid charts" }, barChart({ id: "chart-values", title: "Values most thanked for", format: String,
                                                    rows: rec.topValues.map(v => ({ label: words(v.value), values: [v.count] })) }))
      : h("p", { class: "muted" }, "No kudos in this period yet."));
}

/** A "show more" button for a paged list: `load(after)` appends the next page and answers its
 *  pageInfo; the button goes when there is nothing more. */
function more(id, text, pageInfo, load) {
  if (!pageInfo.hasNextPage) return null;
  let after = pageInfo.endCursor;
  const button = h("button", { type: "button", class: "secondary", id, onclick: async () => {
    button.disabled = true;
    try {
      const next = await load(after);
      after = next.endCursor;
      if (!next.hasNextPage) { button.remove(); return; }
    } finally {
      button.disabled = false;  // after a failure too: the portal says what went wrong; try again
    }
  } }, text);
  return button;
}

function cell(label, ...content) { return h("td", { "data-label": label }, ...content); }
