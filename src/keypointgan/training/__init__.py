"""Training KeypointGAN, one concern per file (read in this order):

* :mod:`.objective` — the paper's G, D and η terms with their weights;
* :mod:`.update` — one all-or-nothing update (finite losses and gradients, or nothing changes);
* :mod:`.averaging` — the weight average used for prediction (EMA, plain mean, batch-norm statistics);
* :mod:`.state` — everything a checkpoint holds, as one object;
* :mod:`.loop` — :func:`train_step` and :func:`fit`, the run around it;
* :mod:`.pretrain` (η on the prior alone), :mod:`.pool` (D's history of fakes),
  :mod:`.evaluation` (held-out frames), :mod:`.runlog` (``log.jsonl`` and TensorBoard).

The frames come from :class:`keypointgan.data.loader.PairLoader`.
"""

from .evaluation import EvalSet
from .loop import StepResult, evaluate_state, fit, inference_networks, predict_state, pretrain_regressor, save_state, train_step
from .objective import keypointgan_objective
from .pool import ImagePool
from .pretrain import pretrain_eta, sample_prior
from .state import TrainState, check_training_checkpoint

__all__ = [
    "TrainState", "fit", "train_step", "StepResult", "pretrain_regressor", "pretrain_eta", "sample_prior", "inference_networks",
    "predict_state", "evaluate_state", "save_state", "EvalSet", "ImagePool", "keypointgan_objective",
    "check_training_checkpoint",
]
