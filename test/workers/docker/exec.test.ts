/** Decoding Docker's multiplexed output (`docker/exec.ts`); exec itself runs against the daemon in `containers.test.ts`. */
import { PassThrough } from 'node:stream';
import t from 'tap';
import { demux, demuxBuffer } from '../../../src/workers/docker/exec.js';

function frame(type: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const head = Buffer.alloc(8);
  head[0] = type;
  head.writeUInt32BE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

t.test('demux splits frames by stream as they arrive, across chunk boundaries', async (t) => {
  const s = new PassThrough();
  const got: string[] = [];
  demux(s, (stream, data) => got.push(`${stream}:${data.toString()}`));
  const all = Buffer.concat([frame(1, 'out'), frame(2, 'err'), frame(1, '')]);
  s.write(all.subarray(0, 5));
  s.write(all.subarray(5, 13));
  s.write(all.subarray(13));
  s.end();
  await new Promise((resolve) => s.on('end', resolve).resume());
  t.same(got, ['stdout:out', 'stderr:err'], 'empty frames are skipped');
});

t.test('demuxBuffer decodes framed logs and passes unframed text through', async (t) => {
  t.equal(demuxBuffer(Buffer.concat([frame(1, 'a'), frame(2, 'b')])), 'ab');
  t.equal(demuxBuffer(Buffer.from('plain text')), 'plain text');
});
