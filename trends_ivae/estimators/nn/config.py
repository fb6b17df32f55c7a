"""Typed configurations of the model and of its training (nanoGPT style).

A checkpoint stores both as plain dicts; :func:`IVAEConfig.from_dict` rebuilds them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

PRIORS = ("gauss", "laplace", "normal")
AUX_KINDS = ("discrete", "continuous", "factors")
ACTIVATIONS = ("leaky_relu", "xtanh", "tanh", "elu", "relu")


class DictConfig:
    """A configuration dataclass stored as a plain dict (checkpoints, model files)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict`; keys the class does not know (older files) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class IVAEConfig(DictConfig):
    """Architecture of one iVAE.

    Attributes
    ----------
    n_features : int
        Dimension d of an observation x.
    n_components : int
        Number n of latent sources z.
    n_aux : int
        Width of the auxiliary variable's layout: levels of a discrete u, columns of a
        continuous one, the summed levels of all factors (their concatenated one-hot
        columns) for ``"factors"``.
    aux_kind : {"discrete", "continuous", "factors"}
        How u reaches the model. ``"discrete"``: u is (B, 1), the level index (as a
        float or integer tensor; the model takes ``u.long()``), and λ(u) is a lookup
        table with one row per level (the paper's "look-up"). ``"continuous"``: u is
        (B, n_aux) floats and λ(u) an MLP. ``"factors"``: u is (B, F), one column
        index per factor into the concatenated one-hot layout of ``n_aux`` columns
        (factor f's levels start at its offset); λ(u) is the MLP of that
        concatenated one-hot, evaluated on the indices (the one-hot is never built).
        The encoder q(z|x,u) sees u the same way (``[x, one-hot u]`` for the index
        kinds). Index kinds cost O(B F), not O(B n_aux); the parameters have the
        shapes of the dense model, so weights carry over between the two.
    prior : {"gauss", "laplace", "normal"}
        Factorial conditional prior p(z|u): Gaussian with u-dependent mean and
        variance, Laplace with u-dependent location and scale, or "normal": the
        standard normal of a vanilla VAE (u ignored everywhere, not identifiable).
    hidden_dim, n_hidden : int
        Width and number of hidden layers of encoder, decoder and prior MLPs.
    activation : str
        Hidden non-linearity of the MLPs.
    decoder_var : float or None
        Fixed variance of the Gaussian observation noise p(x|z), in the units of the
        (standardised) data; None learns one variance per feature.
    learn_prior_mean : bool
        Learn the u-dependent prior mean (required for uncentred sources). False
        fixes it at zero, as the public reference implementation does.
    encoder_uses_aux : bool
        q(z|x,u) (True, the paper) or q(z|x).
    posterior : {"full", "diag"}
        Covariance of the Gaussian q(z|x,u): full (Cholesky factor from the encoder;
        the ELBO is then tight in the low-noise regime, see :mod:`.ivae`) or diagonal
        (the paper).
    linear_skip : bool
        Decoder ``f(z) = A z + c + r(z)`` and encoder mean ``W x + b + e(x, u)``: an
        affine path beside each MLP, so that the model can start at a linear ICA
        solution (:meth:`IVAEModel.set_linear_start`) with residuals that start at zero.
    linear_decoder : bool
        An affine decoder ``f(z) = A z + c`` (the encoder and prior unchanged): the
        linear counterpart of the model, i.e. linear ICA with the same conditional
        prior, against which the nonlinear decoder is tested
        (:mod:`trends_ivae.group.nonlinearity`).
    affine_path : {"train", "frozen", "anneal"}
        How the decoder's affine path (``linear_skip``) trains after a linear start
        (issue 24: leaving the linear basin). ``"train"``: with the rest. ``"frozen"``:
        fixed at the linear-ICA solution, only the nonlinear paths (and the encoder and
        prior) train. ``"anneal"``: a homotopy, ``f(z) = w A z + c + r(z)`` with ``w``
        going linearly from 1 to 0 over ``anneal_steps`` training steps, so that the MLP
        path must take the whole map over.
    anneal_steps : int
        Training steps of the ``"anneal"`` homotopy.
    """

    n_features: int
    n_components: int
    n_aux: int
    aux_kind: str = "discrete"
    prior: str = "gauss"
    hidden_dim: int = 64
    n_hidden: int = 2
    activation: str = "xtanh"
    decoder_var: float | None = 1e-3
    learn_prior_mean: bool = True
    encoder_uses_aux: bool = True
    posterior: str = "full"
    linear_skip: bool = False
    linear_decoder: bool = False
    affine_path: str = "train"
    anneal_steps: int = 1000

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.aux_kind not in AUX_KINDS:
            raise ValueError(f"aux_kind must be one of {AUX_KINDS}, got {self.aux_kind!r}")
        if self.posterior not in ("full", "diag"):
            raise ValueError(f"posterior must be 'full' or 'diag', got {self.posterior!r}")
        if self.affine_path not in ("train", "frozen", "anneal"):
            raise ValueError(f"affine_path must be 'train', 'frozen' or 'anneal', got {self.affine_path!r}")
        if self.decoder_var is not None and not self.decoder_var > 0:
            raise ValueError(f"decoder_var must be positive or None, got {self.decoder_var!r}")

    @property
    def aux_indexed(self) -> bool:
        """True when u holds column indices of a one-hot layout (``"discrete"``, ``"factors"``)."""
        return self.aux_kind != "continuous"


@dataclass
class TrainConfig(DictConfig):
    """How one restart is trained.

    A checkpoint or model file stores it as a dict (:meth:`to_dict`); :meth:`from_dict`
    ignores keys it does not know, such as ``kl_start`` and ``entropy_start`` of files
    written before those (inactive) options were removed.

    Attributes
    ----------
    max_epochs : int
        Upper bound on passes over the training split; the learning-rate schedule
        spans ``max_epochs`` epochs even when training stops earlier.
    batch_size : int
        Mini-batch size (at most the training split's size); the batch indices are
        drawn on the device, and an epoch is ``n_train // batch_size`` batches.
    lr : float
        Peak Adam learning rate: a linear warm-up over the first ``min(200,
        max(1, total_steps // 50))`` steps, then a cosine decay to ``lr * lr_final_ratio``.
    lr_final_ratio : float
        The learning rate at the last step, as a fraction of ``lr``.
    warmup_frac : float
        Fraction of all steps over which the decoder variance is annealed from
        ``decoder_var_start`` to the model's ``decoder_var``; during it every epoch
        counts as an improvement (no early stopping, the latest state is the best).
    decoder_var_start : float or None
        Observation-noise variance at the first step (None: the model's own from the
        start). Ignored when the model learns its variance (``decoder_var=None``).
    val_frac : float
        Held-out fraction for early stopping and for choosing between restarts (0: no
        split; the training ELBO is used instead).
    patience : int
        Epochs without improvement of the held-out ELBO (after the warm-up) before
        stopping.
    grad_clip : float
        Maximum norm of the gradient of all parameters together.
    weight_decay : float
        Adam's L2 penalty.
    amp : bool
        bfloat16 autocast on CUDA (ignored on other devices).
    eval_batch_size : int
        Rows per forward pass when evaluating the held-out ELBO (memory only; the
        value does not depend on it).
    n_iwae : int
        Importance samples of the training bound (1: the ELBO with an analytical KL;
        K > 1: the importance-weighted bound, see :meth:`IVAEModel.iwae`). The
        held-out criterion is the ELBO either way.
    """

    max_epochs: int = 80
    batch_size: int = 256
    lr: float = 5e-3
    lr_final_ratio: float = 0.05
    warmup_frac: float = 0.3
    decoder_var_start: float | None = 1e-2
    val_frac: float = 0.1
    patience: int = 30
    grad_clip: float = 10.0
    weight_decay: float = 0.0
    amp: bool = False
    eval_batch_size: int = 65536
    n_iwae: int = 4
