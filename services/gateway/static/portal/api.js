// The portal's only way to the system: the public GraphQL API (POST /graphql) and its
// subscriptions (graphql-transport-ws on the same address), signed in with a bearer token.

const TOKEN_KEY = "insidetrack-portal-token";

export class SignInNeeded extends Error {}

/** Take a token handed over in the link (#token=...), then forget it from the address bar. */
export function takeTokenFromLink() {
  const match = location.hash.match(/^#token=([A-Za-z0-9\-._~+/]+=*)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, match[1]);
    history.replaceState(null, "", location.pathname + location.search + "#/");
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
export function signOut() { sessionStorage.removeItem(TOKEN_KEY); }

/** Run a query or mutation; resolves to `data`, rejects with an Error whose message a person can act on. */
export async function gql(query, variables = {}) {
  if (!token()) throw new SignInNeeded("not signed in");
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/graphql-response+json",
                 "Authorization": "Bearer " + token() },
      body: JSON.stringify({ query, variables }),
    });
  } catch (e) {
    throw new Error("Inside Track cannot be reached right now. Check your connection and try again.");
  }
  let body = {};
  try { body = await response.json(); } catch (e) { /* not JSON: handled below */ }
  const first = (body.errors || [])[0];
  const code = first && first.extensions ? first.extensions.code : null;
  if (response.status === 401 || code === "UNAUTHENTICATED") throw new SignInNeeded(first ? first.message : "sign in again");
  if (response.status === 429) throw new Error("You are going a bit fast: wait a few seconds and try again.");
  if (!body.data) throw first ? refusal(first) : new Error(`The request failed (HTTP ${response.status}).`);
  if (first && Object.values(body.data).every(v => v === null)) throw refusal(first);
  return body.data;
}

/** An Error a person can read, keeping the error's code and the service's own words (`detail`)
 *  for a page that says more than "not allowed" (Insights says why). */
function refusal(error) {
  const e = new Error(friendly(error));
  e.code = error.extensions ? error.extensions.code : null;
  e.detail = error.message;
  return e;
}

function friendly(error) {
  const code = error.extensions && error.extensions.code;
  if (code === "SERVICE_UNAVAILABLE") return "Part of Inside Track is unavailable right now; try again in a minute.";
  if (code === "FORBIDDEN") return "You are not allowed to do that.";
  return error.message;
}

/** A mutation: its payload, whose `errors` are business-rule refusals ({field, code, message}). */
export async function mutate(query, variables) {
  const data = await gql(query, variables);
  return Object.values(data)[0];
}

/** One WebSocket for the tab: subscriptions come and go with the pages; it reconnects and
 *  re-subscribes by itself (and tells the pages, which then re-read what they show). */
class Live {
  constructor() { this.ops = new Map(); this.next = 1; this.socket = null; this.ready = false; this.retry = 1000; this.onState = () => {}; }

  subscribe(query, variables, onNext, onReconnect) {
    const id = "s" + (this.next++);
    this.ops.set(id, { query, variables, onNext, onReconnect });
    if (this.ready) this._send({ id, type: "subscribe", payload: { query, variables } });
    else this._connect();
    return () => {
      if (this.ops.delete(id) && this.ready) this._send({ id, type: "complete" });
    };
  }

  _send(message) { this.socket.send(JSON.stringify(message)); }

  _connect() {
    if (this.socket) return;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
    const socket = this.socket = new WebSocket(url, "graphql-transport-ws");
    let reconnecting = this.wasOpen;
    socket.onopen = () => this._send({ type: "connection_init", payload: { Authorization: "Bearer " + token() } });
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        this.ready = true; this.wasOpen = true; this.retry = 1000; this.onState(true);
        for (const [id, op] of this.ops) {
          this._send({ id, type: "subscribe", payload: { query: op.query, variables: op.variables } });
          if (reconnecting && op.onReconnect) op.onReconnect();  // catch up on what was missed
        }
      } else if (message.type === "ping") {
        this._send({ type: "pong" });
      } else if (message.type === "next") {
        const op = this.ops.get(message.id);
        if (op && message.payload.data) op.onNext(message.payload.data);
      }
    };
    socket.onclose = (event) => {
      this.socket = null; this.ready = false; this.onState(false);
      if (event.code === 4403) return;  // the token is refused: the next HTTP call says so
      if (this.ops.size) setTimeout(() => this._connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  }
}

export const live = new Live();
