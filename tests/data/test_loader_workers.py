"""DataLoader worker set-up of the training loop (rgfl.engine.sampler.worker_init)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Run in a fresh interpreter: the parent must have used OpenCV's thread pool before the workers
# fork (as a process that split or drew images before training has), which this test process
# may or may not have done already.
SCRIPT = textwrap.dedent(
    """
    import signal
    import cv2, numpy as np, torch
    from rgfl.engine.sampler import worker_init

    class Probe(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            resized = cv2.resize(np.zeros((2048, 2048, 3), np.uint8), (1024, 1024), interpolation=cv2.INTER_AREA)
            return signal.getsignal(signal.SIGINT) is signal.SIG_IGN, resized.shape

    cv2.resize(np.zeros((4096, 4096, 3), np.uint8), (2048, 2048), interpolation=cv2.INTER_AREA)
    loader = torch.utils.data.DataLoader(Probe(), num_workers=1, worker_init_fn=worker_init, collate_fn=lambda b: b[0])
    ignores_sigint, shape = next(iter(loader))
    print(ignores_sigint, shape)
    """
)


def test_workers_ignore_ctrl_c_and_start_after_the_parent_used_opencv_threads():
    # cv2.setNumThreads in a worker forked from such a parent deadlocked (worker_init once did it).
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the DataLoader worker hung in its set-up") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "(1024,", "1024,", "3)"]
