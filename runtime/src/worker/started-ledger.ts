/**
 * The early-acked tasks a worker is running, noted on disk (config `stateDir`), so that a worker
 * killed without any handler running (SIGKILL, the OOM killer, a container runtime's kill) does
 * not leave them PENDING forever: their messages were acknowledged when they started, so the
 * broker cannot give them back. The next worker started on the same folder (in Kubernetes: the
 * restarted container, which keeps the pod's emptyDir) finds the notes and settles those tasks as
 * cut off (FAILURE(WorkerLostError), or published again with republishOnWorkerLost; see
 * Consumer.recoverLost). Late-ack tasks need no note: the broker restores their messages.
 *
 * One file per running task (`<n>.json`: the message and where it came from), written before the
 * message is acknowledged and removed once the task's outcome is recorded: a kill in between
 * leaves the note, never a task without one. A note is written whole or not at all (written as
 * `<n>.json.tmp`, then renamed): a kill while writing leaves only a `.tmp`, whose message was not
 * acknowledged yet, so the broker still has it. A folder belongs to one worker process at a time.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeliveryInfo } from '../brokers/broker.js';
import { CeleriacError } from '../errors.js';
import { fromEnvelope, parseEnvelope, toEnvelope, type Envelope } from '../protocol/envelope.js';
import type { WireMessage } from '../protocol/wire-message.js';

/** A task noted as running, as read back after a kill. */
export interface StartedNote {
  readonly message: WireMessage;
  readonly info: DeliveryInfo;
}

/** A note left by a killed worker: readable, or not (kept aside, see StartedLedger.setAside). */
export type LeftoverNote = { readonly file: string; readonly note: StartedNote } | { readonly file: string; readonly unreadable: Error; readonly text: string };

/** The suffix of a note that could not be read, kept for a person to look at. */
export const UNREADABLE_NOTE_SUFFIX = '.unreadable';

export class StartedLedger {
  private seq = 0;

  constructor(readonly dir: string) {}

  /**
   * Creates the folder if needed and returns (and forgets) the notes a previous worker left: the
   * tasks it was running when it died. Call once, before the first add().
   */
  async takeLeftover(): Promise<LeftoverNote[]> {
    try {
      await mkdir(this.dir, { recursive: true });
      const names = await readdir(this.dir);
      // Cut off while written: the message was not acknowledged yet, the broker gives it back.
      await Promise.all(names.filter((f) => f.endsWith('.json.tmp')).map((f) => rm(join(this.dir, f), { force: true })));
      const files = names.filter((f) => f.endsWith('.json')).sort();
      // Set-aside notes keep their number: a new note never takes their name.
      this.seq = names.reduce((n, f) => Math.max(n, Number.parseInt(f, 10) + 1 || 0), 0);
      return await Promise.all(files.map(async (f) => readNote(join(this.dir, f), await readFile(join(this.dir, f), 'utf8'))));
    } catch (err) {
      throw new CeleriacError('E_STATE_DIR', `cannot read the worker's state folder ${this.dir} (stateDir): ${(err as Error).message}`, { cause: err });
    }
  }

  /** Keeps a note that could not be read as `<file>.unreadable`: out of the next worker's way, not deleted. */
  async setAside(file: string): Promise<string> {
    const kept = file + UNREADABLE_NOTE_SUFFIX;
    await rename(file, kept);
    return kept;
  }

  /** Notes a task as running; returns the note's file, for remove(). */
  async add(note: StartedNote): Promise<string> {
    const file = join(this.dir, `${this.seq++}.json`);
    // The message as kombu's JSON envelope (body in base64): it reads back byte for byte.
    const stored: StoredNote = { envelope: toEnvelope(note.message, note.info.exchange, note.info.routingKey), info: note.info };
    await writeFile(`${file}.tmp`, JSON.stringify(stored));
    await rename(`${file}.tmp`, file);
    return file;
  }

  /** The task's outcome is recorded: its note goes. */
  async remove(file: string): Promise<void> {
    await rm(file, { force: true });
  }
}

interface StoredNote {
  envelope: Envelope;
  info: DeliveryInfo;
}

function readNote(file: string, text: string): LeftoverNote {
  try {
    const stored = JSON.parse(text) as StoredNote;
    if (typeof stored?.info?.queue !== 'string') throw new Error('the note has no delivery info (info.queue)');
    return { file, note: { message: fromEnvelope(parseEnvelope(JSON.stringify(stored.envelope))), info: stored.info } };
  } catch (err) {
    return { file, unreadable: err as Error, text };
  }
}
