/*
 * Connection: keeps one transport of a stream connected. Falls back from WebSocket to
 * SSE to long-poll when one never opens, reconnects with backoff, probes for WebSocket
 * again while on a fallback, and reports its state:
 *
 *   connecting  (first attempt)   live   reconnecting   offline   denied (gave up: 403/4403)
 */

import { TRANSPORTS, backoffDelay } from "./transports.js";

// A transport that fails this many times in a row without ever opening is given up for
// the next one: WebSocket is the one most often blocked by proxies and firewalls.
const FAILURES_BEFORE_FALLBACK = 2;
// Answers that no retry will change: access lost (4403 close, 403) or no such stream.
const FINAL_REASONS = new Set([4403, 401, 403, 404]);

export class Connection {
  /**
   * spec: the stream (see transports.js) with env and timing; forced: "ws" | "sse" |
   * "longpoll" | ""; handlers: cursor(), opened(), event(e), acked(id, seq),
   * rejected(id, code, detail, retry), state(state, label).
   */
  constructor(spec, forced, handlers) {
    this.spec = spec;
    this.env = spec.env;
    this.timing = spec.timing;
    this.handlers = handlers;
    const kinds = spec.kinds ?? ["ws", "sse", "longpoll"];
    this.kinds = TRANSPORTS[forced] ? [forced] : kinds;
    this.kindIndex = 0;
    this.transport = null;
    this.live = false;
    this.everLive = false;
    this.stopped = false;
    this.attempt = 0;
    this.failuresInRow = 0;
    this.retryTimer = null;
    this.openTimer = null;
    this.probe = null;
    this.probeAttempt = 0;
    this.probeTimer = null;
    this.state = "connecting";
  }

  /** The transport in use, or the one the next attempt will use. */
  get name() {
    return TRANSPORTS[this.kinds[this.kindIndex]].label;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.env.clearTimeout(this.retryTimer);
    this.env.clearTimeout(this.openTimer);
    this.stopProbe();
    const transport = this.transport;
    this.transport = null;
    this.live = false;
    transport?.close();
  }

  connect() {
    if (this.stopped) return;
    this.env.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const transport = this.attach(TRANSPORTS[this.kinds[this.kindIndex]]);
    this.transport = transport;
    this.live = false;
    this.show(this.everLive ? "reconnecting" : "connecting");
    this.openTimer = this.env.setTimeout(() => this.giveUp(transport), this.timing.openTimeout);
    transport.connect(this.handlers.cursor());
  }

  /**
   * A new transport whose stream reaches us only while it is ours (the current one or
   * the upgrade probe): a replaced transport's late events are dropped.
   */
  attach(Kind) {
    let transport = null;
    const sink = {
      opened: () => {
        if (transport === this.probe) this.adopt(transport);
        else if (transport === this.transport) this.opened();
      },
      event: (e) => {
        if (transport === this.transport) this.handlers.event(e);
      },
      closed: (wasOpen, reason) => {
        if (transport === this.probe) this.probeFailed();
        else if (transport === this.transport) this.closed(wasOpen, reason);
      },
      // Acks and errors are facts about a write whichever connection carried it.
      acked: (id, seq) => this.handlers.acked(id, seq),
      rejected: (id, code, detail, retry) => this.handlers.rejected(id, code, detail, retry),
    };
    transport = new Kind(this.spec, sink);
    return transport;
  }

  opened() {
    this.env.clearTimeout(this.openTimer);
    this.live = true;
    this.everLive = true;
    this.attempt = 0;
    this.failuresInRow = 0;
    this.show("live");
    if (this.kindIndex > 0) this.scheduleProbe();
    else this.probeAttempt = 0;
    this.handlers.opened();
  }

  giveUp(transport) {
    if (this.transport !== transport || this.live) return;
    transport.close();
    this.closed(false);
  }

  closed(wasOpen, reason) {
    this.env.clearTimeout(this.openTimer);
    this.stopProbe();
    this.transport = null;
    this.live = false;
    if (this.stopped) return;
    // A WebSocket refused at the handshake says nothing (1006), so a 403 is only seen
    // as such on long-poll; 4403 is the server ending a socket on purpose.
    if (FINAL_REASONS.has(reason) && (reason === 4403 || this.name === "longpoll")) {
      this.stopped = true;
      this.show("denied");
      return;
    }
    if (wasOpen) {
      this.failuresInRow = 0;
      // A connection that worked and then dropped points at the server or the network,
      // not at a blocked transport: try the preferred one again.
      this.kindIndex = 0;
    } else if (++this.failuresInRow >= FAILURES_BEFORE_FALLBACK) {
      this.failuresInRow = 0;
      this.kindIndex = Math.min(this.kindIndex + 1, this.kinds.length - 1);
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    const delay = backoffDelay(this.timing, this.attempt++, this.env.random);
    this.retryTimer = this.env.setTimeout(() => this.connect(), delay);
    if (this.env.onLine?.() === false) this.show("offline");
    else this.show(this.everLive ? "reconnecting" : "connecting");
  }

  /*
   * A fallback is also taken when the whole server was down for a while (a restart),
   * not only when WebSocket is blocked. While a fallback is live, a WebSocket is tried in
   * the background now and then and taken over when it opens, so clients do not stay on
   * long-poll after every deploy. Each failed probe doubles the wait.
   */
  scheduleProbe() {
    this.env.clearTimeout(this.probeTimer);
    const { probeFirst, probeCap } = this.timing;
    const delay = Math.min(probeCap, probeFirst * 2 ** this.probeAttempt++);
    this.probeTimer = this.env.setTimeout(() => this.startProbe(), delay);
  }

  startProbe() {
    if (!this.live || this.kindIndex === 0) return;
    this.probe = this.attach(TRANSPORTS[this.kinds[0]]);
    this.probeTimer = this.env.setTimeout(() => this.probeFailed(), this.timing.openTimeout);
    this.probe.connect(this.handlers.cursor());
  }

  adopt(probe) {
    this.env.clearTimeout(this.probeTimer);
    this.probe = null;
    this.transport.close();
    this.transport = probe;
    this.kindIndex = 0;
    // Events the old transport delivered meanwhile come again in the probe's replay;
    // the client above drops them by seq.
    this.opened();
  }

  probeFailed() {
    this.stopProbe();
    if (this.live) this.scheduleProbe();
  }

  stopProbe() {
    this.env.clearTimeout(this.probeTimer);
    const probe = this.probe;
    this.probe = null;
    probe?.close();
  }

  /** The network is back (the browser's `online` event): retry now, not after backoff. */
  online() {
    if (this.stopped) return;
    if (this.live) this.show("live");
    else if (this.retryTimer) {
      this.attempt = 0;
      this.connect();
    }
  }

  offline() {
    if (!this.stopped) this.show("offline");
  }

  write(frame) {
    if (!this.live) return false;
    this.transport.write(frame);
    return true;
  }

  show(state) {
    this.state = state;
    this.handlers.state(state, this.name);
  }
}
