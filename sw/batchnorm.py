"""Exact BatchNorm statistics for a trained model (run at the end of training and before
intermediate evaluations)."""
from __future__ import annotations

__all__ = ["recalibrate_bn", "has_batchnorm"]


def _bn_layers(model) -> list:
    import torch
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(model) -> bool:
    """Whether ``model`` has any BatchNorm layer."""
    return bool(_bn_layers(model))


def recalibrate_bn(model, data, batch_size: int, device, max_images: int = 4096) -> None:
    """Replace every BatchNorm's running statistics by their exact average over (up to
    ``max_images`` of) the un-augmented training images, at the current weights.

    Binary weights keep flipping sign during training, so the momentum-averaged running
    statistics lag behind the weights they normalise; for quantized activations a small shift
    moves values across thresholds.  Measured on dupnet-demo-style networks this recovers
    several AP points (docs/training.md).  Deterministic: fixed images, fixed order, no
    randomness.

    Parameters
    ----------
    model : the model (its training/eval mode is restored)
    data : BatchReader
        The training images (:class:`dupnet.sw.data.BatchReader`), read in order.
    batch_size : int
    device : where the model is
    max_images : int
        Use at most the first this many images.
    """
    import torch
    bns = _bn_layers(model)
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                 # cumulative average over the batches
    was_training = model.training
    model.train()
    n = min(len(data), max_images)
    order = [list(range(k, min(n, k + batch_size))) for k in range(0, n, batch_size)]
    try:
        with torch.no_grad():
            for images, _ in data.batches(order):
                model(images.float().to(device))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
