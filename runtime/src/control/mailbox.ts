/**
 * A worker's pidbox (kombu `Node`, Celery `worker/pidbox.py`, spec §7.2): receives requests
 * broadcast on `celery.pidbox`, runs those addressed to this node (destination, else pattern),
 * and replies `{nodename: value}` to the client's reply queue with the request's ticket.
 */
import type { Broker } from '../brokers/broker.js';
import { CONTROL_EXCHANGE, decodeControl, encodeReply, isAddressedTo, type ControlRequest } from '../protocol/control.js';
import { acceptedContentTypes } from '../protocol/serializers.js';
import type { WireMessage } from '../protocol/wire-message.js';
import { ControlCommandError, errorRepr, findCommand, NO_REPLY, type WorkerControl } from './commands.js';

export interface Mailbox {
  /** Stops listening (the broker's close ends it too). */
  stop(): void;
}

/** Starts answering remote control on `broker` for the worker `w`. */
export function startMailbox(broker: Broker, w: WorkerControl): Mailbox {
  const stop = new AbortController();
  const log = w.log.child({ component: 'pidbox' });
  // Python clients send control requests with their task serializer.
  const accepted = acceptedContentTypes(w.app.config.acceptContent);
  accepted.add('application/json');

  async function reply(req: ControlRequest, value: unknown): Promise<void> {
    if (!req.reply_to) return;
    const m = encodeReply(w.hostname, value, req.ticket, w.clock.forward());
    await broker.publishDirect(req.reply_to.exchange, req.reply_to.routing_key, m);
  }

  async function handle(m: WireMessage): Promise<void> {
    let req: ControlRequest;
    try {
      req = decodeControl(m, accepted);
    } catch (err) {
      // A bad request carries no ticket to answer: logged, and the mailbox goes on.
      log.warn({ err }, 'ignored an undecodable control request');
      return;
    }
    w.clock.adjust(m.headers.clock);
    if (!isAddressedTo(req, w.hostname)) return;
    const command = findCommand(w.app, req.method);
    let value: unknown;
    if (!command) {
      log.warn({ method: req.method }, 'unknown remote-control command');
      value = { error: `KeyError('${req.method}')` };
    } else {
      try {
        value = await command.run(w, req.arguments);
      } catch (err) {
        // Celery's dispatch: a failed command replies its error; the worker goes on. A refusal
        // the command meant (ControlCommandError) is no fault of the worker's.
        if (err instanceof ControlCommandError) log.warn({ method: req.method, error: err.message }, 'remote-control command refused');
        else log.error({ err, method: req.method }, 'remote-control command failed');
        value = { error: errorRepr(err) };
      }
    }
    if (value === NO_REPLY) return;
    if (log.isLevelEnabled('debug')) log.debug({ method: req.method, ticket: req.ticket }, 'remote-control command answered');
    await reply(req, value);
  }

  broker
    .subscribe(
      CONTROL_EXCHANGE,
      (m) => {
        handle(m).catch((err) => log.error({ err }, 'replying to a remote-control request failed'));
      },
      stop.signal,
    )
    .catch((err) => {
      log.error({ err }, 'remote control subscription failed: inspect, control and revoke will not reach this worker');
    });
  return { stop: () => stop.abort() };
}
