"""The image pool of pix2pix / CycleGAN: D sees a history of Φ's outputs, not only the newest."""

from __future__ import annotations

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """A history of up to ``size`` fakes (``1×C×H×W`` each).

    :meth:`query` passes each new fake through while the pool fills; once full, each fake is, with
    probability ½, swapped for a random stored one (which D then sees instead) and otherwise passed
    through.  ``size`` 0 disables the pool.
    """

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``B×C×H×W`` fakes → ``B×C×H×W`` fakes for D (detached), drawing from ``generator``."""
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand((), generator=generator).item() < 0.5:
                i = int(torch.randint(self.size, (), generator=generator))
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def snapshot(self) -> list[torch.Tensor]:
        """The pool's contents (entries are replaced, never modified in place, so a shallow copy suffices)."""
        return list(self.images)

    def restore(self, snapshot: list[torch.Tensor]) -> None:
        self.images = list(snapshot)

    def state_dict(self) -> dict:
        return {"images": torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict, device) -> None:
        imgs = state["images"]
        self.images = [imgs[i : i + 1].to(device) for i in range(imgs.shape[0])]
