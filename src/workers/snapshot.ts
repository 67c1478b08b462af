/**
 * Snapshot backends and filesystem tasks, as plain async functions. The fs worker dispatches
 * {@link FsTask}s to these; tests and tools may call them directly. Every function takes the
 * task's own fields (the `type` field is ignored) and an optional {@link OpOptions} whose signal
 * stops copies between entries and kills spawned processes.
 *
 * Layouts (see `protocol.ts`):
 * - base: `<base>/data` (btrfs: a subvolume).
 * - state: `<states>/<id>/state.json` + `<states>/<id>/data`; built in `<states>/.tmp-<id>-<rand>/`,
 *   `state.json` written last and fsync'd, then renamed into place.
 * - runtime: copy/btrfs `<runtime>/data`; overlay `<runtime>/{upper,work,merged}` + `lowers.json`.
 *
 * Every failure is an {@link EngineError}: plain filesystem errors become {@link SnapshotError}.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { addAbortListener } from 'node:events';
import { constants as fsc, type Dirent, type Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { CancelledError, EngineError, SnapshotError } from '../errors.js';
import type {
  CloneSource,
  FsTask,
  FsTaskOutput,
  ProbeResult,
  SnapshotBackendKind,
  StateMarker,
} from './protocol.js';

/** Options shared by every operation. */
export interface OpOptions {
  /** Stops the operation between copied entries and kills spawned processes. */
  signal?: AbortSignal | undefined;
}

/** The fields of one task type, without its `type` discriminator. */
export type FsArgs<K extends FsTask['type']> = Omit<Extract<FsTask, { type: K }>, 'type'>;

/** `statfs` magic number of btrfs. */
export const BTRFS_MAGIC = 0x9123683e;
/** Inode number of every btrfs subvolume's root directory. */
const BTRFS_SUBVOL_INO = 256;
/** Name of the marker file of a complete state. */
export const STATE_MARKER = 'state.json';
/** Name of the file recording an overlay runtime's lower stack. */
export const RUNTIME_LOWERS = 'lowers.json';
/** Prefix of in-progress state directories (siblings of the final directory). */
export const TMP_STATE_PREFIX = '.tmp-';
/** The kernel copies mount options into one page. */
const MOUNT_OPTIONS_LIMIT = 4000;
/** Parallel file operations per directory during copies and walks. */
const COPY_PARALLELISM = 8;

const BACKENDS: readonly SnapshotBackendKind[] = ['copy', 'overlay', 'btrfs'];

// ---------------------------------------------------------------------------------------------
// Small helpers

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError('filesystem operation aborted', { cause: signal.reason });
}

function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function toEngineError(op: string, e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  if (e instanceof Error && e.name === 'AbortError') return new CancelledError(`${op} aborted`, { cause: e });
  const msg = e instanceof Error ? e.message : String(e);
  return new SnapshotError(`${op} failed: ${msg}`, { details: errnoOf(e), cause: e });
}

/** Runs `fn`, turning anything it throws into an {@link EngineError} naming `op`. */
async function guard<T>(op: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toEngineError(op, e);
  }
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}

async function isDirectory(p: string): Promise<boolean> {
  return (await lstatOrUndefined(p))?.isDirectory() ?? false;
}

/** Runs `fn` over `items` with at most `limit` in flight; on failure waits for the running ones, then throws the first error. */
async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let first: unknown;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (e) {
        if (!failed) {
          failed = true;
          first = e;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failed) throw first;
}

const binCache = new Map<string, string | undefined>();

/** Absolute path of an executable on PATH (plus the usual sbin dirs), or undefined. */
export async function findBinary(name: string): Promise<string | undefined> {
  if (binCache.has(name)) return binCache.get(name);
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  let found: string | undefined;
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      await fsp.access(candidate, fsc.X_OK);
      const st = await fsp.stat(candidate);
      if (st.isFile()) {
        found = candidate;
        break;
      }
    } catch {
      // not here
    }
  }
  binCache.set(name, found);
  return found;
}

async function requireBinary(name: string): Promise<string> {
  const bin = await findBinary(name);
  if (bin === undefined) throw new SnapshotError(`required program not found: ${name}`);
  return bin;
}

interface ExecOptions extends OpOptions {
  cwd?: string | undefined;
}

const OUTPUT_CAP = 64 * 1024;

/** Spawns a program, resolving with its stdout; a non-zero exit rejects with its stderr in the message. */
async function exec(name: string, args: readonly string[], opts: ExecOptions = {}): Promise<string> {
  throwIfAborted(opts.signal);
  const file = await requireBinary(name);
  const cmdline = [name, ...args].join(' ');
  let disposer: Disposable | undefined;
  try {
    return await new Promise<string>((resolve, reject) => {
      const child = spawn(file, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (out.length < OUTPUT_CAP) out += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (err.length < OUTPUT_CAP) err += d;
      });
      if (opts.signal !== undefined) {
        const signal = opts.signal;
        disposer = addAbortListener(signal, () => {
          child.kill('SIGKILL');
          reject(new CancelledError(`${cmdline} aborted`, { cause: signal.reason }));
        });
      }
      child.once('error', (e) => reject(new SnapshotError(`cannot run ${name}: ${e.message}`, { cause: e })));
      child.once('close', (code, sig) => {
        if (code === 0) {
          resolve(out);
          return;
        }
        const text = err.trim() || out.trim();
        reject(new SnapshotError(`${cmdline} failed (${code ?? sig})${text ? `: ${text}` : ''}`, { details: text || undefined }));
      });
    });
  } finally {
    disposer?.[Symbol.dispose]();
  }
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    await fh.sync();
  } catch (e) {
    // Some filesystems refuse fsync on directories; the data is still written.
    if (errnoOf(e) !== 'EINVAL' && errnoOf(e) !== 'EBADF') throw e;
  } finally {
    await fh.close();
  }
}

/** Flushes the whole filesystem holding `p`, so a state's files are durable before its marker is. */
async function syncFilesystem(p: string, signal: AbortSignal | undefined): Promise<void> {
  await exec('sync', ['-f', p], { signal });
}

async function writeFileDurably(p: string, text: string): Promise<void> {
  const fh = await fsp.open(p, 'wx', 0o644);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Markers

type MarkerLoad = { ok: true; marker: StateMarker } | { ok: false; reason: string };

function parseMarker(text: string): StateMarker | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  if (o['v'] !== 1) return 'unknown version';
  if (typeof o['backend'] !== 'string' || !BACKENDS.includes(o['backend'] as SnapshotBackendKind)) return 'bad backend';
  const lowers = o['lowers'];
  if (!Array.isArray(lowers) || !lowers.every((l) => typeof l === 'string' && l !== '' && !path.isAbsolute(l))) {
    return 'bad lowers';
  }
  const size = o['sizeBytes'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return 'bad sizeBytes';
  if (typeof o['createdAt'] !== 'string') return 'bad createdAt';
  return {
    v: 1,
    backend: o['backend'] as SnapshotBackendKind,
    lowers: lowers as string[],
    sizeBytes: size,
    createdAt: o['createdAt'],
  };
}

async function loadMarker(stateDir: string): Promise<MarkerLoad> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(stateDir, STATE_MARKER), 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return { ok: false, reason: `missing ${STATE_MARKER}` };
    throw e;
  }
  const m = parseMarker(text);
  return typeof m === 'string' ? { ok: false, reason: `invalid ${STATE_MARKER} (${m})` } : { ok: true, marker: m };
}

/** The marker of a complete state, or undefined when the state is missing or incomplete. */
export async function readStateMarker(stateDir: string): Promise<StateMarker | undefined> {
  return guard('read state marker', async () => {
    const m = await loadMarker(stateDir);
    return m.ok ? m.marker : undefined;
  });
}

async function requireMarker(stateDir: string): Promise<StateMarker> {
  const m = await loadMarker(stateDir);
  if (!m.ok) throw new SnapshotError(`state is not complete (${m.reason}): ${stateDir}`);
  return m.marker;
}

async function readRuntimeLowers(runtimeDir: string): Promise<string[]> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(runtimeDir, RUNTIME_LOWERS), 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new SnapshotError(`not an overlay runtime (no ${RUNTIME_LOWERS}): ${runtimeDir}`);
    throw e;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  const lowers = (v as { lowers?: unknown } | undefined)?.lowers;
  if (!Array.isArray(lowers) || lowers.length === 0 || !lowers.every((l) => typeof l === 'string' && l !== '')) {
    throw new SnapshotError(`invalid ${RUNTIME_LOWERS} in ${runtimeDir}`);
  }
  return lowers as string[];
}

// ---------------------------------------------------------------------------------------------
// Mounts

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

async function mountPoints(): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp !== undefined && mp !== '') out.push(unescapeMountinfo(mp));
  }
  return out;
}

async function canonical(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fsp.realpath(abs);
  } catch {
    return abs;
  }
}

function depth(p: string): number {
  return p === '/' ? 0 : p.split('/').length - 1;
}

function isAtOrBelow(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);
}

/** Mount points at or below `under` (from /proc/self/mountinfo), deepest first, each listed once. */
export async function listMounts(args: FsArgs<'list-mounts'>): Promise<FsTaskOutput['list-mounts']> {
  return guard('list mounts', async () => {
    const base = await canonical(args.under);
    const found = new Set((await mountPoints()).filter((mp) => isAtOrBelow(mp, base)));
    const mounts = [...found].sort((a, b) => depth(b) - depth(a) || b.length - a.length || a.localeCompare(b));
    return { mounts };
  });
}

async function isMountPoint(p: string): Promise<boolean> {
  const c = await canonical(p);
  return (await mountPoints()).includes(c);
}

/** Unmounts `mp`, falling back to a lazy unmount when it is busy. */
async function unmount(mp: string, signal: AbortSignal | undefined): Promise<void> {
  try {
    await exec('umount', [mp], { signal });
  } catch (e) {
    if (e instanceof CancelledError) throw e;
    if (!(await isMountPoint(mp))) return;
    await exec('umount', ['-l', mp], { signal });
  }
}

/** Unmounts everything at or below `dir`, deepest first, until nothing is left. */
async function unmountAllBelow(dir: string, signal: AbortSignal | undefined): Promise<void> {
  for (let round = 0; round < 16; round++) {
    const { mounts } = await listMounts({ under: dir });
    if (mounts.length === 0) return;
    for (const mp of mounts) await unmount(mp, signal);
  }
  const { mounts } = await listMounts({ under: dir });
  if (mounts.length > 0) throw new SnapshotError(`cannot unmount ${mounts.join(', ')}`);
}

/** Unmounts everything at or below `path`, deepest first; never removes a file. */
export async function unmountTree(args: FsArgs<'unmount'>, opts: OpOptions = {}): Promise<FsTaskOutput['unmount']> {
  return guard(`unmount ${args.path}`, async () => {
    const { mounts } = await listMounts({ under: args.path });
    if (mounts.length > 0) await unmountAllBelow(await canonical(args.path), opts.signal);
    return { unmounted: mounts.length };
  });
}

// ---------------------------------------------------------------------------------------------
// btrfs

async function onBtrfs(p: string): Promise<boolean> {
  return (await fsp.statfs(p)).type === BTRFS_MAGIC;
}

/** True when `p` is the root directory of a btrfs subvolume. */
export async function isSubvolume(p: string): Promise<boolean> {
  const st = await lstatOrUndefined(p);
  if (st === undefined || !st.isDirectory() || st.ino !== BTRFS_SUBVOL_INO) return false;
  return onBtrfs(p);
}

/** Subvolume roots strictly below `dir` and `dir` itself if it is one, deepest first. */
async function subvolumesAtOrBelow(dir: string, signal: AbortSignal | undefined): Promise<string[]> {
  if (!(await onBtrfs(dir))) return [];
  const found: string[] = [];
  const walk = async (d: string, st: Stats): Promise<void> => {
    throwIfAborted(signal);
    if (st.ino === BTRFS_SUBVOL_INO) found.push(d);
    const entries = await fsp.readdir(d, { withFileTypes: true });
    for (const ent of entries) {
      if (!ent.isDirectory()) continue;
      const child = path.join(d, ent.name);
      const cst = await fsp.lstat(child);
      await walk(child, cst);
    }
  };
  const st = await fsp.lstat(dir);
  if (st.isDirectory()) await walk(dir, st);
  return found.reverse();
}

async function createSubvolume(p: string, signal: AbortSignal | undefined): Promise<void> {
  await exec('btrfs', ['subvolume', 'create', p], { signal });
}

async function deleteSubvolume(p: string, signal: AbortSignal | undefined): Promise<void> {
  await exec('btrfs', ['subvolume', 'delete', p], { signal });
}

// ---------------------------------------------------------------------------------------------
// Generic tree operations

/** Deletes `p` and everything below it: unmounts mounts under it, deletes btrfs subvolumes, then removes files. */
export async function removeTree(args: FsArgs<'remove-tree'>, opts: OpOptions = {}): Promise<FsTaskOutput['remove-tree']> {
  return guard(`remove ${args.path}`, async () => {
    const abs = path.resolve(args.path);
    if (abs === '/') throw new SnapshotError('refusing to remove /');
    await unmountAllBelow(abs, opts.signal);
    const st = await lstatOrUndefined(abs);
    if (st === undefined) return { removed: false };
    if (st.isDirectory()) {
      for (const sv of await subvolumesAtOrBelow(abs, opts.signal)) await deleteSubvolume(sv, opts.signal);
    }
    throwIfAborted(opts.signal);
    await fsp.rm(abs, { recursive: true, force: true, maxRetries: 3 });
    return { removed: true };
  });
}

interface Tally {
  bytes: number;
  files: number;
}

async function measureInto(p: string, st: Stats, tally: Tally, signal: AbortSignal | undefined): Promise<void> {
  if (st.isFile()) {
    tally.bytes += st.size;
    tally.files += 1;
    return;
  }
  if (!st.isDirectory()) return;
  throwIfAborted(signal);
  const entries = await fsp.readdir(p, { withFileTypes: true });
  await eachLimit(entries, COPY_PARALLELISM, async (ent: Dirent) => {
    if (!ent.isFile() && !ent.isDirectory()) return;
    const child = path.join(p, ent.name);
    await measureInto(child, await fsp.lstat(child), tally, signal);
  });
}

/** Apparent size and count of the regular files at or below `path` (symlinks are not followed). */
export async function measure(args: FsArgs<'measure'>, opts: OpOptions = {}): Promise<FsTaskOutput['measure']> {
  return guard(`measure ${args.path}`, async () => {
    const st = await lstatOrUndefined(args.path);
    if (st === undefined) throw new SnapshotError(`cannot measure ${args.path}: no such file or directory`, { details: 'ENOENT' });
    const tally: Tally = { bytes: 0, files: 0 };
    await measureInto(args.path, st, tally, opts.signal);
    return tally;
  });
}

async function lchownQuiet(p: string, uid: number, gid: number): Promise<void> {
  try {
    await fsp.lchown(p, uid, gid);
  } catch (e) {
    // Without root, files simply stay owned by the engine user.
    if (errnoOf(e) !== 'EPERM') throw e;
  }
}

async function copyEntry(src: string, dest: string, st: Stats, tally: Tally, signal: AbortSignal | undefined, topLevel: boolean): Promise<void> {
  throwIfAborted(signal);
  if (st.isDirectory()) {
    try {
      await fsp.mkdir(dest, { mode: 0o700 });
    } catch (e) {
      if (!(topLevel && errnoOf(e) === 'EEXIST')) throw e;
    }
    const entries = await fsp.readdir(src, { withFileTypes: true });
    await eachLimit(entries, COPY_PARALLELISM, async (ent: Dirent) => {
      const s = path.join(src, ent.name);
      await copyEntry(s, path.join(dest, ent.name), await fsp.lstat(s), tally, signal, false);
    });
    await lchownQuiet(dest, st.uid, st.gid);
    await fsp.chmod(dest, st.mode & 0o7777);
    await fsp.utimes(dest, st.atime, st.mtime);
  } else if (st.isFile()) {
    // FICLONE makes a reflink where the filesystem supports it and silently copies otherwise.
    await fsp.copyFile(src, dest, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL);
    await lchownQuiet(dest, st.uid, st.gid);
    await fsp.chmod(dest, st.mode & 0o7777);
    await fsp.utimes(dest, st.atime, st.mtime);
    tally.bytes += st.size;
    tally.files += 1;
  } else if (st.isSymbolicLink()) {
    const target = await fsp.readlink(src, { encoding: 'buffer' });
    await fsp.symlink(target, dest);
    await lchownQuiet(dest, st.uid, st.gid);
    await fsp.lutimes(dest, st.atime, st.mtime);
  } else {
    throw new SnapshotError(`cannot copy ${src}: unsupported file type (mode ${st.mode.toString(8)})`);
  }
}

/** Resolves `p` through its deepest existing ancestor (so a not-yet-existing path is still canonical). */
async function canonicalMaybeMissing(p: string): Promise<string> {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(await fsp.realpath(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return abs;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * Copies directory `src` to `dest` (which must not exist, or be an empty directory), preserving
 * modes, owners, symlink texts and timestamps, using reflinks where the filesystem has them.
 */
export async function copyTree(args: FsArgs<'copy-tree'>, opts: OpOptions = {}): Promise<FsTaskOutput['copy-tree']> {
  return guard(`copy ${args.src} to ${args.dest}`, async () => {
    const st = await lstatOrUndefined(args.src);
    if (st === undefined || !st.isDirectory()) throw new SnapshotError(`source must be a directory: ${args.src}`);
    const srcReal = await fsp.realpath(args.src);
    const destReal = await canonicalMaybeMissing(args.dest);
    if (isAtOrBelow(destReal, srcReal)) throw new SnapshotError(`destination must not be inside source: ${args.dest} is in ${args.src}`);
    const dst = await lstatOrUndefined(args.dest);
    if (dst !== undefined) {
      if (!dst.isDirectory() || (await fsp.readdir(args.dest)).length > 0) {
        throw new SnapshotError(`destination already exists and is not an empty directory: ${args.dest}`);
      }
    } else {
      await fsp.mkdir(path.dirname(path.resolve(args.dest)), { recursive: true, mode: 0o700 });
    }
    const tally: Tally = { bytes: 0, files: 0 };
    await copyEntry(srcReal, path.resolve(args.dest), st, tally, opts.signal, true);
    return tally;
  });
}

/** `cp -a`: keeps owners, modes, times, xattrs (overlay opaque markers) and device nodes (whiteouts). */
async function copyArchive(src: string, dest: string, signal: AbortSignal | undefined): Promise<void> {
  await exec('cp', ['-a', '--reflink=auto', '--', src, dest], { signal });
}

// ---------------------------------------------------------------------------------------------
// Probe

/** Which snapshot backends the filesystem at `root` supports (creates `root` if missing). */
export async function probe(args: FsArgs<'probe'>, opts: OpOptions = {}): Promise<ProbeResult> {
  return guard(`probe ${args.root}`, async () => {
    const notes: string[] = [];
    await fsp.mkdir(args.root, { recursive: true, mode: 0o700 });
    let btrfs = false;
    const btrfsBin = await findBinary('btrfs');
    const type = (await fsp.statfs(args.root)).type;
    if (btrfsBin === undefined) notes.push('btrfs: the btrfs program is not installed');
    else if (type !== BTRFS_MAGIC) notes.push(`btrfs: ${args.root} is not on a btrfs filesystem (type 0x${type.toString(16)})`);
    else btrfs = true;
    const overlay = await probeOverlay(args.root, notes, opts.signal);
    return { btrfs, overlay, notes };
  });
}

async function probeOverlay(root: string, notes: string[], signal: AbortSignal | undefined): Promise<boolean> {
  if (process.platform !== 'linux') {
    notes.push('overlay: only available on Linux');
    return false;
  }
  if ((await findBinary('mount')) === undefined || (await findBinary('umount')) === undefined) {
    notes.push('overlay: the mount program is not installed');
    return false;
  }
  let dir: string;
  try {
    dir = await fsp.mkdtemp(path.join(root, '.sqlrs-overlay-probe-'));
  } catch (e) {
    notes.push(`overlay: cannot create a probe directory: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
  const merged = path.join(dir, 'merged');
  try {
    for (const d of ['lower', 'upper', 'work', 'merged']) await fsp.mkdir(path.join(dir, d));
    await fsp.writeFile(path.join(dir, 'lower', 'probe'), 'ok');
    await exec('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=lower,upperdir=${dir}/upper,workdir=${dir}/work`, merged], {
      cwd: dir,
      signal,
    });
    const seen = await fsp.readFile(path.join(merged, 'probe'), 'utf8').catch(() => '');
    await unmount(merged, signal);
    if (seen !== 'ok') {
      notes.push('overlay: the mounted view did not show the lower layer');
      return false;
    }
    return true;
  } catch (e) {
    if (e instanceof CancelledError) throw e;
    notes.push(`overlay: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  } finally {
    await removeTree({ path: dir }).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Bases

/** Creates `<baseDir>/data` (btrfs: a subvolume), owned by uid:gid, mode 0700. Keeps an existing one of the right kind. */
export async function prepareBase(args: FsArgs<'prepare-base'>, opts: OpOptions = {}): Promise<FsTaskOutput['prepare-base']> {
  return guard(`prepare base ${args.baseDir}`, async () => {
    await fsp.mkdir(args.baseDir, { recursive: true, mode: 0o700 });
    const data = path.join(args.baseDir, 'data');
    if (args.backend === 'btrfs') {
      if (!(await onBtrfs(args.baseDir))) throw new SnapshotError(`state store is not mounted as btrfs: ${args.baseDir}`);
      const st = await lstatOrUndefined(data);
      if (st !== undefined && !(await isSubvolume(data))) await removeTree({ path: data }, opts);
      if (st === undefined || !(await isSubvolume(data))) await createSubvolume(data, opts.signal);
    } else {
      const st = await lstatOrUndefined(data);
      if (st !== undefined && !st.isDirectory()) throw new SnapshotError(`base data is not a directory: ${data}`);
      await fsp.mkdir(data, { recursive: true, mode: 0o700 });
    }
    await lchownQuiet(data, args.uid, args.gid);
    await fsp.chmod(data, 0o700);
    return { dataDir: data };
  });
}

// ---------------------------------------------------------------------------------------------
// Clones

function sourceDataDir(source: CloneSource): string {
  return path.join(source.kind === 'base' ? source.baseDir : source.stateDir, 'data');
}

/** Makes `dir` an empty directory; returns whether it was created here. */
async function claimEmptyDir(dir: string, what: string): Promise<boolean> {
  const st = await lstatOrUndefined(dir);
  if (st === undefined) {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return true;
  }
  if (!st.isDirectory() || (await fsp.readdir(dir)).length > 0) {
    throw new SnapshotError(`${what} already exists and is not an empty directory: ${dir}`);
  }
  return false;
}

/** Relative path of `p` from `root`, as recorded in markers; refuses characters overlay options cannot carry. */
function layerName(root: string, p: string): string {
  const rel = path.relative(path.resolve(root), path.resolve(p));
  if (rel === '' || path.isAbsolute(rel)) throw new SnapshotError(`layer ${p} cannot be expressed relative to ${root}`);
  return rel;
}

function checkOptionPath(p: string): void {
  if (/[,:\\\n]/.test(p)) throw new SnapshotError(`path cannot be used in overlay mount options: ${p}`);
}

/** The deepest directory containing every path. */
function commonDir(paths: readonly string[]): string {
  const split = paths.map((p) => path.resolve(p).split('/'));
  const first = split[0] ?? [''];
  let n = 0;
  while (n < first.length && split.every((s) => s[n] === first[n])) n++;
  return first.slice(0, n).join('/') || '/';
}

/** Mounts an overlay with `lowers` (absolute, top first). Lower paths are passed relative to their common directory to keep the option string short. */
async function mountOverlay(lowers: readonly string[], upper: string, work: string, merged: string, signal: AbortSignal | undefined): Promise<void> {
  const cwd = commonDir(lowers.map((l) => path.dirname(l)));
  const rel = lowers.map((l) => path.relative(cwd, l));
  for (const p of [...rel, upper, work]) checkOptionPath(p);
  const options = `lowerdir=${rel.join(':')},upperdir=${upper},workdir=${work}`;
  if (options.length > MOUNT_OPTIONS_LIMIT) {
    throw new SnapshotError(`overlay layer stack of ${lowers.length} layers is too long for one mount (${options.length} bytes of options); lower the maximum depth`);
  }
  await exec('mount', ['-t', 'overlay', 'overlay', '-o', options, merged], { cwd, signal });
}

/**
 * Makes a writable clone of a base or state in `runtimeDir` (which must not exist or be empty) and
 * returns its mount dir. On failure nothing is left in `runtimeDir`.
 */
export async function clone(args: FsArgs<'clone'>, opts: OpOptions = {}): Promise<FsTaskOutput['clone']> {
  return guard(`clone into ${args.runtimeDir}`, async () => {
    const srcData = sourceDataDir(args.source);
    let stateLowers: string[] = [];
    if (args.source.kind === 'state') {
      const marker = await requireMarker(args.source.stateDir);
      stateLowers = marker.lowers;
      if (args.backend !== 'overlay' && marker.lowers.length > 0) {
        throw new SnapshotError(`state is an overlay layer and needs the overlay backend: ${args.source.stateDir}`);
      }
    }
    if (!(await isDirectory(srcData))) throw new SnapshotError(`clone source has no data directory: ${srcData}`);
    const created = await claimEmptyDir(args.runtimeDir, 'runtime dir');
    try {
      const mountDir = await cloneInto(args, srcData, stateLowers, opts.signal);
      return { mountDir };
    } catch (e) {
      await removeTree({ path: args.runtimeDir }).catch(() => undefined);
      if (!created) await fsp.mkdir(args.runtimeDir, { recursive: true, mode: 0o700 }).catch(() => undefined);
      throw e;
    }
  });
}

async function cloneInto(args: FsArgs<'clone'>, srcData: string, stateLowers: readonly string[], signal: AbortSignal | undefined): Promise<string> {
  const rt = args.runtimeDir;
  switch (args.backend) {
    case 'copy': {
      const data = path.join(rt, 'data');
      await copyTree({ src: srcData, dest: data }, { signal });
      await lchownQuiet(data, args.uid, args.gid);
      return data;
    }
    case 'btrfs': {
      if (!(await isSubvolume(srcData))) throw new SnapshotError(`clone source is not a btrfs subvolume: ${srcData}`);
      const data = path.join(rt, 'data');
      await exec('btrfs', ['subvolume', 'snapshot', srcData, data], { signal });
      await lchownQuiet(data, args.uid, args.gid);
      return data;
    }
    case 'overlay': {
      const lowers = [layerName(args.root, srcData), ...stateLowers];
      const absLowers = lowers.map((l) => path.resolve(args.root, l));
      for (let i = 0; i < absLowers.length; i++) {
        if (!(await isDirectory(absLowers[i] as string))) throw new SnapshotError(`lower layer missing: ${lowers[i]}`);
      }
      const upper = path.join(rt, 'upper');
      const work = path.join(rt, 'work');
      const merged = path.join(rt, 'merged');
      await fsp.mkdir(upper, { mode: 0o700 });
      await lchownQuiet(upper, args.uid, args.gid);
      await fsp.chmod(upper, 0o700);
      await fsp.mkdir(work, { mode: 0o700 });
      await fsp.mkdir(merged, { mode: 0o700 });
      await writeFileDurably(path.join(rt, RUNTIME_LOWERS), `${JSON.stringify({ v: 1, lowers })}\n`);
      await mountOverlay(absLowers, upper, work, merged, signal);
      return merged;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/**
 * Captures a runtime as the immutable state `stateDir`. The state is built in a sibling
 * `.tmp-<id>-<rand>` directory and renamed into place once its files and `state.json` are durable.
 * A complete existing state makes this a no-op returning its recorded size.
 */
export async function snapshot(args: FsArgs<'snapshot'>, opts: OpOptions = {}): Promise<FsTaskOutput['snapshot']> {
  return guard(`snapshot ${args.runtimeDir} into ${args.stateDir}`, async () => {
    if (!Number.isInteger(args.maxDepth) || args.maxDepth < 1) throw new SnapshotError(`maxDepth must be a positive integer, got ${args.maxDepth}`);
    const stateDir = path.resolve(args.stateDir);
    const existing = await loadMarker(stateDir);
    if (existing.ok) return { sizeBytes: existing.marker.sizeBytes };
    const est = await lstatOrUndefined(stateDir);
    if (est !== undefined) {
      if (!est.isDirectory() || (await fsp.readdir(stateDir)).length > 0) {
        throw new SnapshotError(`state dir exists but is incomplete (${existing.reason}): ${stateDir}`);
      }
      await fsp.rmdir(stateDir);
    }
    const statesDir = path.dirname(stateDir);
    await fsp.mkdir(statesDir, { recursive: true, mode: 0o700 });
    const tmp = path.join(statesDir, `${TMP_STATE_PREFIX}${path.basename(stateDir)}-${randomBytes(6).toString('hex')}`);
    await fsp.mkdir(tmp, { mode: 0o700 });
    try {
      const data = path.join(tmp, 'data');
      const lowers = await snapshotInto(args, data, opts.signal);
      const { bytes } = await measure({ path: data }, opts);
      await syncFilesystem(tmp, opts.signal);
      const marker: StateMarker = { v: 1, backend: args.backend, lowers, sizeBytes: bytes, createdAt: new Date().toISOString() };
      await writeFileDurably(path.join(tmp, STATE_MARKER), `${JSON.stringify(marker)}\n`);
      await fsyncPath(tmp);
      throwIfAborted(opts.signal);
      try {
        await fsp.rename(tmp, stateDir);
      } catch (e) {
        // Someone else completed the same state meanwhile: theirs wins.
        const other = await loadMarker(stateDir);
        if (other.ok) {
          await removeTree({ path: tmp });
          return { sizeBytes: other.marker.sizeBytes };
        }
        throw e;
      }
      await fsyncPath(statesDir);
      return { sizeBytes: bytes };
    } catch (e) {
      await removeTree({ path: tmp }).catch(() => undefined);
      throw e;
    }
  });
}

/** Writes the state's `data`; returns the lower stack to record. */
async function snapshotInto(args: FsArgs<'snapshot'>, data: string, signal: AbortSignal | undefined): Promise<string[]> {
  const rt = args.runtimeDir;
  switch (args.backend) {
    case 'copy': {
      const src = path.join(rt, 'data');
      if (!(await isDirectory(src))) throw new SnapshotError(`runtime has no data directory: ${src}`);
      await copyTree({ src, dest: data }, { signal });
      return [];
    }
    case 'btrfs': {
      const src = path.join(rt, 'data');
      if (!(await isSubvolume(src))) throw new SnapshotError(`runtime data is not a btrfs subvolume: ${src}`);
      await exec('btrfs', ['subvolume', 'snapshot', '-r', src, data], { signal });
      return [];
    }
    case 'overlay': {
      const lowers = await readRuntimeLowers(rt);
      if (1 + lowers.length > args.maxDepth) {
        const merged = path.join(rt, 'merged');
        if (!(await isMountPoint(merged))) throw new SnapshotError(`overlay runtime is not mounted: ${merged}`);
        await copyArchive(merged, data, signal);
        return [];
      }
      const upper = path.join(rt, 'upper');
      if (!(await isDirectory(upper))) throw new SnapshotError(`overlay runtime has no upper layer: ${upper}`);
      await copyArchive(upper, data, signal);
      return lowers;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Remount

/**
 * Makes an existing runtime usable again after its container went away, and returns its mount dir.
 * An overlay runtime (it has `lowers.json`) whose `merged` is no longer mounted (e.g. after a host
 * reboot) is mounted again from the recorded lower stack and its own upper/work dirs; a mounted one is
 * left alone. A copy/btrfs runtime needs nothing: its mount dir is `data`.
 * @throws SnapshotError when the runtime dir, its data, upper layer or a lower layer is missing.
 */
export async function remountRuntime(args: FsArgs<'remount-runtime'>, opts: OpOptions = {}): Promise<FsTaskOutput['remount-runtime']> {
  return guard(`remount runtime ${args.runtimeDir}`, async () => {
    const rt = path.resolve(args.runtimeDir);
    if (!(await isDirectory(rt))) throw new SnapshotError(`runtime dir is missing: ${rt}`);
    if ((await lstatOrUndefined(path.join(rt, RUNTIME_LOWERS))) === undefined) {
      const data = path.join(rt, 'data');
      if (!(await isDirectory(data))) throw new SnapshotError(`runtime has no data directory: ${data}`);
      return { mountDir: data, remounted: false };
    }
    const merged = path.join(rt, 'merged');
    if (await isMountPoint(merged)) return { mountDir: merged, remounted: false };
    const lowers = await readRuntimeLowers(rt);
    const absLowers = lowers.map((l) => path.resolve(args.root, l));
    for (let i = 0; i < absLowers.length; i++) {
      if (!(await isDirectory(absLowers[i] as string))) throw new SnapshotError(`lower layer missing: ${lowers[i]}`);
    }
    const upper = path.join(rt, 'upper');
    if (!(await isDirectory(upper))) throw new SnapshotError(`overlay runtime has no upper layer: ${upper}`);
    const work = path.join(rt, 'work');
    await fsp.mkdir(work, { recursive: true, mode: 0o700 });
    await fsp.mkdir(merged, { recursive: true, mode: 0o700 });
    await mountOverlay(absLowers, upper, work, merged, opts.signal);
    return { mountDir: merged, remounted: true };
  });
}

// ---------------------------------------------------------------------------------------------
// Removal and verification

/** Unmounts and deletes a runtime (any backend; mounts and subvolumes below it are handled too). */
export async function removeRuntime(args: FsArgs<'remove-runtime'>, opts: OpOptions = {}): Promise<FsTaskOutput['remove-runtime']> {
  return guard(`remove runtime ${args.runtimeDir}`, async () => {
    if (args.backend === 'overlay') {
      const merged = path.join(args.runtimeDir, 'merged');
      if (await isMountPoint(merged)) await unmount(merged, opts.signal);
    }
    return removeTree({ path: args.runtimeDir }, opts);
  });
}

/** Deletes a state directory (btrfs: its read-only subvolume too). Callers keep states that are lowers of others. */
export async function removeState(args: FsArgs<'remove-state'>, opts: OpOptions = {}): Promise<FsTaskOutput['remove-state']> {
  return guard(`remove state ${args.stateDir}`, async () => removeTree({ path: args.stateDir }, opts));
}

/** Looks `rel` up through overlay layers (top first), honouring whiteouts (opaque directories are not considered). */
async function existsInLayers(layers: readonly string[], rel: string): Promise<boolean> {
  const parts = rel.split('/');
  for (const layer of layers) {
    let cur = layer;
    for (let i = 0; i < parts.length; i++) {
      cur = path.join(cur, parts[i] as string);
      const st = await lstatOrUndefined(cur);
      if (st === undefined) break; // not in this layer: look further down
      if (i === parts.length - 1) return st.isFile();
      if (!st.isDirectory()) return false; // a whiteout or a file hides everything below
    }
  }
  return false;
}

/** Checks that a state can be cloned: complete marker, data present, all lowers present, clean cluster. */
export async function verifyState(args: FsArgs<'verify-state'>): Promise<FsTaskOutput['verify-state']> {
  return guard(`verify state ${args.stateDir}`, async () => {
    const m = await loadMarker(args.stateDir);
    if (!m.ok) return { ok: false, reason: m.reason };
    const data = path.join(args.stateDir, 'data');
    if (!(await isDirectory(data))) return { ok: false, reason: 'missing data directory' };
    for (const lower of m.marker.lowers) {
      if (!(await isDirectory(path.resolve(args.root, lower)))) return { ok: false, reason: `lower layer missing: ${lower}` };
    }
    for (const rel of ['pgdata/postmaster.pid', 'postmaster.pid']) {
      if ((await lstatOrUndefined(path.join(data, rel)))?.isFile()) return { ok: false, reason: 'dirty snapshot (postmaster.pid present)' };
    }
    const layers = [data, ...m.marker.lowers.map((l) => path.resolve(args.root, l))];
    let hasVersion = false;
    for (const rel of ['pgdata/PG_VERSION', 'PG_VERSION']) {
      if (await existsInLayers(layers, rel)) {
        hasVersion = true;
        break;
      }
    }
    if (!hasVersion) return { ok: false, reason: 'missing PG_VERSION' };
    return { ok: true };
  });
}
