"""Model Garden's COCO -> TFRecord converter, with byte-identical output (run as ``python -m proxy_task.convert``).

Takes the flags of ``official.vision.data.create_coco_tf_record`` and runs its `main`. tf.train.Example holds its
features in a protobuf map, which protobuf serializes in hash order, so the same input gives different bytes from
one run to the next; afterwards every record is parsed and written back with deterministic serialization (map
entries sorted by key). The records' contents are exactly the converter's.
"""

from __future__ import annotations

import glob
import os
import sys


def _rewrite_deterministically(path: str) -> None:
    import tensorflow as tf

    records = [
        tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
        for r in tf.data.TFRecordDataset(path)
    ]
    tmp = path + ".tmp"
    with tf.io.TFRecordWriter(tmp) as writer:
        for r in records:
            writer.write(r)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    """Runs the converter with `argv` (its flags), then rewrites its output shards."""
    from absl import flags

    from official.vision.data import create_coco_tf_record

    flags.FLAGS(["create_coco_tf_record", *argv])
    create_coco_tf_record.main(None)
    prefix = flags.FLAGS.output_file_prefix
    shards = sorted(glob.glob(prefix + "-*-of-*.tfrecord"))
    if not shards:
        print(f"no output shards at {prefix}", file=sys.stderr)
        return 1
    for path in shards:
        _rewrite_deterministically(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
