/**
 * Deletion planning (`api.md` §2.12, §2.14, §3.13): builds the response tree with its blocked
 * decisions and the ordered removals (children before parents) the deletion actor performs.
 * Planning only reads; a dry run or a blocked plan changes nothing.
 */
import type { InstanceRow, StateRow } from '../../mailbox/store.js';
import type { DeleteNode, DeleteOp, DeleteResult } from './transition.js';

/** The store reads planning needs. */
export interface PlanReader {
  instancesOfState(stateId: string): InstanceRow[];
  childStates(stateId: string): StateRow[];
  /** True while running work uses the state (a build from it, an instance being made of it). */
  inUse?(stateId: string): boolean;
}

/** Counts an instance's client sessions (0 when its container is stopped or gone). */
export type ConnectionCounter = (row: InstanceRow) => Promise<number>;

export interface PlanOptions {
  force: boolean;
  dryRun: boolean;
  countConnections: ConnectionCounter;
  /** Directory of an instance whose row has none recorded. */
  instanceDir(instanceId: string): string;
}

export interface DeletionPlan {
  result: DeleteResult;
  /** Removals in execution order; empty when blocked or a dry run. */
  ops: DeleteOp[];
  blocked: boolean;
}

function outcome(blocked: boolean, dryRun: boolean): DeleteResult['outcome'] {
  return blocked ? 'blocked' : dryRun ? 'would_delete' : 'deleted';
}

function finish(root: DeleteNode, ops: DeleteOp[], dryRun: boolean): DeletionPlan {
  const blocked = root.blocked !== undefined;
  return { result: { dry_run: dryRun, outcome: outcome(blocked, dryRun), root }, ops: blocked || dryRun ? [] : ops, blocked };
}

function instanceOp(row: InstanceRow, o: PlanOptions): DeleteOp {
  return { kind: 'instance', id: row.instance_id, containerId: row.runtime_id, dir: row.runtime_dir ?? o.instanceDir(row.instance_id) };
}

async function instanceNode(row: InstanceRow, o: PlanOptions): Promise<DeleteNode> {
  const connections = await o.countConnections(row);
  const node: DeleteNode = { kind: 'instance', id: row.instance_id, connections };
  if (row.runtime_id) node.runtime_id = row.runtime_id;
  if (connections > 0 && !o.force) node.blocked = 'active_connections';
  return node;
}

/** Plans `DELETE /v1/instances/{id}`. */
export async function planInstanceDeletion(row: InstanceRow, o: PlanOptions): Promise<DeletionPlan> {
  const node = await instanceNode(row, o);
  return finish(node, [instanceOp(row, o)], o.dryRun);
}

/**
 * Plans `DELETE /v1/states/{id}`. Without `recurse`, a state with instances or child states is
 * blocked `has_descendants` (no children listed). With `recurse`, the tree lists the state's
 * instances, then its child states (recursively); a blocked descendant blocks every ancestor with
 * `blocked_by_descendant`, and then nothing is deleted. A state that running work uses (a build
 * on top of it, an instance being made of it) is blocked `has_descendants` either way: the
 * descendant is on its way, and its files must not vanish from under it.
 */
export async function planStateDeletion(row: StateRow, recurse: boolean, reader: PlanReader, o: PlanOptions): Promise<DeletionPlan> {
  if (!recurse) {
    const node: DeleteNode = { kind: 'state', id: row.state_id };
    if (reader.instancesOfState(row.state_id).length > 0 || reader.childStates(row.state_id).length > 0 || reader.inUse?.(row.state_id)) {
      node.blocked = 'has_descendants';
    }
    return finish(node, [{ kind: 'state', id: row.state_id, dir: row.dir }], o.dryRun);
  }
  const ops: DeleteOp[] = [];
  const seen = new Set<string>();
  const visit = async (st: StateRow): Promise<DeleteNode> => {
    seen.add(st.state_id);
    const node: DeleteNode = { kind: 'state', id: st.state_id };
    const children: DeleteNode[] = [];
    const instances = reader.instancesOfState(st.state_id);
    const nodes = await Promise.all(instances.map((i) => instanceNode(i, o)));
    instances.forEach((i, k) => {
      const n = nodes[k];
      if (!n) return;
      children.push(n);
      ops.push(instanceOp(i, o));
    });
    for (const child of reader.childStates(st.state_id)) {
      if (seen.has(child.state_id)) continue;
      children.push(await visit(child));
    }
    if (children.some((c) => c.blocked !== undefined)) node.blocked = 'blocked_by_descendant';
    else if (reader.inUse?.(st.state_id)) node.blocked = 'has_descendants'; // a descendant is being made
    if (children.length > 0) node.children = children;
    ops.push({ kind: 'state', id: st.state_id, dir: st.dir });
    return node;
  };
  const root = await visit(row);
  return finish(root, ops, o.dryRun);
}
