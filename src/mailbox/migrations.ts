/**
 * Numbered schema migrations. Each runs once, in order, inside a transaction; the applied number is
 * recorded in SQLite's `user_version`. Never edit a released migration: add a new one.
 */
export interface Migration { version: number; name: string; sql: string }

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: '0001_init',
    sql: `
CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  prepare_kind TEXT NOT NULL,
  image_id TEXT NOT NULL,
  resolved_image_id TEXT,
  plan_only INTEGER NOT NULL DEFAULT 0,
  prepare_args_normalized TEXT,
  signature TEXT,
  request_json TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_seq INTEGER NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  result_json TEXT,
  error_json TEXT
);
CREATE INDEX jobs_created ON jobs(created_seq);
CREATE INDEX jobs_signature ON jobs(signature);

CREATE TABLE tasks (
  job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  task_id TEXT NOT NULL,
  status TEXT NOT NULL,
  task_json TEXT NOT NULL,
  args_summary TEXT,
  started_at TEXT,
  finished_at TEXT,
  error_json TEXT,
  PRIMARY KEY (job_id, position)
);

CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  event_json TEXT NOT NULL,
  UNIQUE (job_id, idx)
);

CREATE TABLE states (
  state_id TEXT PRIMARY KEY,
  parent_state_id TEXT,
  image_id TEXT NOT NULL,
  prepare_kind TEXT NOT NULL,
  prepare_args_normalized TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  size_bytes INTEGER,
  last_used_at TEXT,
  last_used_ms INTEGER,
  use_count INTEGER NOT NULL DEFAULT 0,
  min_retention_until TEXT,
  backend TEXT NOT NULL,
  dir TEXT NOT NULL
);
CREATE INDEX states_parent ON states(parent_state_id);

CREATE TABLE instances (
  instance_id TEXT PRIMARY KEY,
  state_id TEXT NOT NULL,
  image_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT,
  runtime_id TEXT,
  runtime_dir TEXT,
  host_port INTEGER,
  job_id TEXT,
  deleting INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX instances_state ON instances(state_id);

CREATE TABLE names (
  name TEXT PRIMARY KEY,
  instance_id TEXT,
  state_id TEXT,
  state_fingerprint TEXT,
  image_id TEXT NOT NULL,
  last_used_at TEXT,
  is_primary INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE bases (
  image_id TEXT PRIMARY KEY,
  dir TEXT NOT NULL,
  backend TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE actors (
  actor_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  state_json TEXT NOT NULL,
  failure TEXT,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX actors_status ON actors(status);

CREATE TABLE mailbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  actor_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  lease_token TEXT,
  lease_until INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mailbox_actor ON mailbox(actor_id, id);

CREATE TABLE dead_letters (
  id INTEGER PRIMARY KEY,
  actor_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  error TEXT NOT NULL,
  failed_ms INTEGER NOT NULL
);

CREATE TABLE work (
  work_id TEXT PRIMARY KEY,
  actor_id TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  created_ms INTEGER NOT NULL
);

CREATE TABLE effects_log (
  actor_id TEXT NOT NULL,
  message_id INTEGER NOT NULL,
  effect TEXT NOT NULL,
  PRIMARY KEY (actor_id, message_id, effect)
);
`,
  },
  {
    version: 2,
    name: '0002_lifecycle_events',
    // The engine's lifecycle events (instances, states, jobs, runs), written in the same
    // transaction as the change each describes; `seq` never reuses a value, so clients resume by it.
    // The table keeps the newest rows only (see the lifecycle writer).
    sql: `
CREATE TABLE lifecycle_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  ts TEXT NOT NULL,
  event TEXT NOT NULL,
  data_json TEXT NOT NULL
);
`,
  },
];

/** The newest schema this engine understands. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
