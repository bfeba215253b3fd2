"""DataLoader worker set-up of the training loop (rgfl.engine.sampler.worker_init)."""

from __future__ import annotations

import signal

import torch

from rgfl.engine.sampler import worker_init


class WorkerSettings(torch.utils.data.Dataset):
    """Reports, from inside the worker, the thread counts and the SIGINT handler it runs with."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[int, int, bool]:
        import cv2

        return cv2.getNumThreads(), torch.get_num_threads(), signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_workers_decode_with_one_opencv_thread_and_ignore_ctrl_c():
    loader = torch.utils.data.DataLoader(WorkerSettings(), num_workers=1, worker_init_fn=worker_init, collate_fn=lambda batch: batch[0])
    cv2_threads, torch_threads, ignores_sigint = next(iter(loader))
    assert (cv2_threads, torch_threads, ignores_sigint) == (1, 1, True)
