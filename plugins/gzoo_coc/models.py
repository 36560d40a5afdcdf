"""CoC-GAN: a convolution- and attention-free GAN built from Context Clusters.

Generator ``cocgan``: a latent vector becomes one point; Point Increasers multiply the
lattice by ``r`` a side (each point -> ``r x r`` new points with their own weight slices and
new coordinates) and Context Cluster blocks mix the points at every stage; a final
per-point linear layer gives the colours. Discriminator ``coc``: the image becomes a point
set (colour + coordinates), Point Reducers and Context Cluster blocks follow, then a global
average over the points gives ``features(x)`` and a (conditional) linear head the logit.

Our reading of CoC-GAN's Table 1
--------------------------------
Table 1 is garbled (a G stage with ``upsample_r = 7`` twice, which would give 98x98 from
2x2; ``2*2`` regions on a 1x1 lattice; a D ``dim = 3`` followed by 16, 32, 128 and a
block of 64). We keep its stage count, widths, depths and head settings and fix the rates
so that the lattice sizes read in its "Points" column (1x1 -> 2x2 -> 4x4 -> 784 = 28x28 for
G; 28x28 -> 14x14 -> 7x7 for D) come out; D's ``dim = 3`` is its input point (1 colour +
2 coordinates), so D's widths are 16, 32, 64, 128. A stage is ``r:dim:depth:regions:centers``:
``r`` the increase/reduction rate a side, ``dim`` the point width, ``depth`` the number of
Context Cluster blocks, ``regions`` a side and ``centers`` a side per region.

Table 1's generator as we read it (``stages=table1``; 28x28, for 32x32 the last rate is 8)::

    z (100) -> linear -> 1 point x 128
    S1  1:128:1:1:1   1x1   lattice, 1 block
    S2  2:64:2:1:2    2x2   lattice, 2 blocks, 2x2 centers
    S3  2:32:2:1:2    4x4   lattice, 2 blocks, 2x2 centers
    S4  7:16:3:2:2    28x28 lattice, 3 blocks, 2x2 regions x 2x2 centers
    -> per-point linear 16 -> C, tanh

The table's last G stage has ``local_centers = 1`` over 784 points, which makes every point
one cluster and clustering a no-op; we use the 2x2 regions and 4 centers of its other rows.

gzoo's default generator (``stages=""``) drops the table's 1x1 stage (width 128) and reaches
the image by smaller rates, one point -> S/4 x S/4 (7x7) -> S/2 -> S, with the table's last
three widths, depths and head settings::

    z (100) -> linear -> 1 point x 100
    S1  7:64:1:1:2    7x7   lattice, 1 block, 2x2 centers
    S2  2:32:2:1:2    14x14 lattice, 2 blocks
    S3  2:16:3:2:2    28x28 lattice, 3 blocks, 2x2 regions x 2x2 centers

With Table 1's rates the last increaser turns each of 4x4 points into a 7x7 patch with 49
independent weight slices; every output pixel's neighbours come from other slices, and the
samples stay speckled patches (docs/coc.md, ablations). With rate 2 a
new point's neighbours share its parents, and the samples are shapes.

Discriminator, 28x28 (points of C + 2 values)::

    S1  2:16:1:2:2    14x14, 1 block, 2x2 regions x 2x2 centers
    S2  2:32:2:1:2    7x7,   2 blocks
    S3  1:64:2:1:2    7x7,   2 blocks
    S4  1:128:2:1:2   7x7,   2 blocks
    -> GroupNorm, mean over points = features (128) -> linear head

All blocks of ``cocgan`` and ``coc`` use ``heads = 4``, ``head_dim = 32`` and ``mlp_r = 8`` (the
table's values for every block but G's first, which lists 16 and 4) -- options ``heads``,
``head_dim``, ``mlp_r`` (the stand-alone ``context-cluster`` block, inserted into other models,
defaults to ``mlp_r = 4``); ``layer_scale`` is the blocks' layer-scale init (1e-5 as in the original;
under a Wasserstein loss ``cocgan`` takes 1 and ``init = "torch"``, its ``wasserstein_opt``, unless the
run sets them: with 1e-5 its trained blocks barely act, docs/coc.md). The whole stage list is the
option ``stages``.

Options that switch deviations from the official Context Clusters code (docs/coc.md): ``init``
(the blocks' MLP initialisation, both networks; default the official one), D ``reducer``
(default the official layout: a cell reduction of the image, overlapping 3x3 neighbourhoods
between stages) and G ``increaser`` (default ``"overlap"``: each new point reads the 3x3
parents around its own); ``cell`` restores the non-overlapping forms. The preset
``cocgan-paper-table1`` trains Table 1 as we read it (``stages=table1``, ``cell``, ``torch``).

Regularizers: ``coc`` declares ``default_reg = ("sn", "r1", "mismatch")`` with R1's weight at 1
and the mismatch term's at 0.5 (``default_reg_opt``), so ``gzoo run`` trains it with spectral norm
on every linear map and a lazy R1 penalty (and, on conditional runs, GAN-CLS's mismatch term: real
images with a wrong label scored as fake) unless the run names its regularizers (``--reg none``: none) or uses a Wasserstein
loss (weight clipping, as the paper's WGAN version). The paper names no regularizer: spectral norm
and R1 are deviations, chosen by the 1,000- and 3,000-step ablations (docs/coc.md); the mismatch
term is the "CLS" of GAN-INT-CLS, the design the paper follows for its conditional model.

Conditional variant (GAN-INT-CLS, CoC-GAN §3.4): with ``num_classes > 0`` the second half
of z is replaced by a linear map of the one-hot label; D receives the label through a linear
layer too: the projection head (``<embed(y), features>``, an embedding being a linear layer on
one-hot labels) and a linear map of the one-hot label added to every point of stage
``label_stage`` (default 1) after its reducer. The paper says the label "also serves as the conditional
input for the discriminator", through FC layers; ``label_stage = 1`` is that reading: with the
first stage's cell reducer (a linear layer over each cell's points), adding a linear map of the
label to every reduced point is the same function as concatenating the label to every input
point (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.errors import ShapeError, UsageError
from gzoo.interfaces import Discriminator, Generator

from .cluster import ClusterBlock, PointGroupNorm, check_init, official_init_
from .points import (
    MODES,
    REDUCER_MODES,
    PointIncreaser,
    PointReducer,
    image_to_points,
    points_to_image,
)


@dataclass(frozen=True)
class StageSpec:
    r: int
    dim: int
    depth: int
    regions: int = 1
    centers: int = 2

    def __str__(self) -> str:
        return f"{self.r}:{self.dim}:{self.depth}:{self.regions}:{self.centers}"


def parse_stages(text: str) -> list[StageSpec]:
    """``"r:dim:depth[:regions[:centers]],..."`` -> stage specs."""
    stages = []
    for item in str(text).split(","):
        parts = item.strip().split(":")
        if not 3 <= len(parts) <= 5 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise UsageError(f"bad stage {item!r}: expected r:dim:depth[:regions[:centers]] with positive integers")
        stages.append(StageSpec(*map(int, parts)))
    return stages


def default_generator_stages(size: int, table1: bool = False) -> str:
    """gzoo's default G stages for an ``size x size`` image, or (``table1``) our literal reading
    of the paper's Table 1."""
    if size % 4:
        raise ShapeError(f"cocgan's default stages need an image size divisible by 4, got {size}; pass stages=...")
    if table1:
        return f"1:128:1:1:1,2:64:2:1:2,2:32:2:1:2,{size // 4}:16:3:2:2"
    return f"{size // 4}:64:1:1:2,2:32:2:1:2,2:16:3:2:2"


D_DEFAULT_STAGES = "2:16:1:2:2,2:32:2:1:2,1:64:2:1:2,1:128:2:1:2"

#: Table 1 as we read it, as model options (the ``cocgan-paper-table1`` preset's models): its
#: stage list, non-overlapping cell increaser and reducer, PyTorch's initialisation.
TABLE1_OPTIONS = {"gen_opt": {"stages": "table1", "increaser": "cell", "init": "torch", "layer_scale": 1e-5},
                  "disc_opt": {"reducer": "cell", "init": "torch"}}


def parse_modes(text: str, n: int, option: str, owner: str, valid: tuple[str, ...] = MODES) -> list[str]:
    """``"cell"``, ``"overlap"`` or a comma list of them, one per stage -> ``n`` modes; ``""`` is
    the official Context Clusters layout: a non-overlapping cell first, overlapping after."""
    if not str(text).strip():
        return ["cell"] + ["overlap"] * (n - 1)
    modes = [m.strip() for m in str(text).split(",")]
    bad = [m for m in modes if m not in valid]
    if bad:
        raise UsageError(f"{owner} option {option}: unknown value {bad[0]!r}; valid: {', '.join(valid)} "
                         "(one for every stage, or a comma list with one per stage)")
    if len(modes) == 1:
        return modes * n
    if len(modes) != n:
        raise UsageError(f"{owner} option {option}={text!r} lists {len(modes)} values for {n} stages")
    return modes


def _blocks(spec: StageSpec, heads: int, head_dim: int, mlp_r: int, layer_scale: float, init: str,
            drop_paths: list[float] | None = None, act: str = "gelu") -> nn.ModuleList:
    rates = drop_paths or [0.0] * spec.depth
    return nn.ModuleList(
        ClusterBlock(spec.dim, heads=heads, head_dim=head_dim, regions=spec.regions, centers=spec.centers, mlp_r=mlp_r,
                     layer_scale=layer_scale, init=init, drop_path=rate, act=act)
        for rate in rates
    )


class CoCGenerator(Generator):
    """CoC-GAN generator: Point Increasers and Context Cluster blocks, no conv, no attention.

    Args:
        latent_dim: size of z, drawn from N(0, I); when conditional its second half is replaced
            by a linear map of the one-hot label
        stages: "r:dim:depth[:regions[:centers]],...", r the increase rate a side (the rates
            multiply to the image side S), dim the point width, regions and centers a side
            (default 1, 2); "" = gzoo's default "S/4:64:1:1:2,2:32:2:1:2,2:16:3:2:2" (1 point ->
            S/4 -> S/2 -> S a side); "table1" = our literal reading of the paper's Table 1,
            "1:128:1:1:1,2:64:2:1:2,2:32:2:1:2,S/4:16:3:2:2"
        heads: clustering heads of every Context Cluster block
        head_dim: width of each head's similarity and value spaces
        mlp_r: hidden-width ratio of every block's point-wise MLP
        layer_scale: initial layer-scale of both residual branches of every block
        init: initialisation of every block's MLP: "official" (the official Context Clusters
            code's truncated normal, std 0.02, zero biases) or "torch" (PyTorch's default)
        increaser: Point Increasers: "overlap" (each new point a linear function of the 3x3
            neighbourhood of points around its parent, so cells share inputs), "cell" (each
            r x r cell a linear function of one point) or "copy" (each new point a copy of its
            parent, then one linear layer for all over the 3x3 neighbourhood of copies: resize,
            then convolve; the first stage, from one point, as "overlap"); one value for every
            stage or a comma list, one per stage
        act: activation of every block's MLP: "gelu" (the official code's) or "leaky_relu"
            (slope 0.2)
    """

    #: under a Wasserstein loss (the WGAN version) G's blocks start as full residual branches. Outside
    #: them G is linear up to one GroupNorm and the tanh, and with layer scale 1e-5 its trained blocks
    #: change its images by only 6-18% (benchmarks/coc_block_share.py). 1,000 Fashion-MNIST steps,
    #: clipping at 0.05, seeds 0-2: fid_lenet 88, 180, 109 (126) against 209, 137, 314 (220); seed 3: 173, so
    #: 137 over four (1.50x DCGAN's; layer scale 0.1 and R1 beside the clipping did not do better;
    #: with coc's bound 0.1 since, 108 over four, 1.18x); with the
    #: non-saturating loss seed 0 got worse (133 against 96), so only Wasserstein runs take it
    #: (docs/coc.md, "G's blocks hardly act")
    wasserstein_opt = {"layer_scale": 1.0, "init": "torch"}

    def __init__(self, *, image_shape: tuple[int, ...], num_classes: int = 0, latent_dim: int = 100,
                 stages: str = "", heads: int = 4, head_dim: int = 32, mlp_r: int = 8, layer_scale: float = 1e-5,
                 init: str = "official", increaser: str = "overlap", act: str = "gelu"):
        super().__init__(image_shape=image_shape, num_classes=num_classes, latent_dim=latent_dim)
        c, size = self.require_image("cocgan")
        self.init = check_init(init)
        self.specs = parse_stages(default_generator_stages(size, table1=stages == "table1")
                                  if stages in ("", "table1") else stages)
        self.increaser_modes = parse_modes(increaser, len(self.specs), "increaser", "cocgan")
        side = 1
        for s in self.specs:
            side *= s.r
            if side % s.regions:
                raise UsageError(f"cocgan stage {s}: {s.regions} regions do not divide its {side}x{side} lattice")
        if side != size:
            raise ShapeError(f"cocgan stages {stages or '(default)'} make {side}x{side} images, the data is {size}x{size}")
        if num_classes:
            half = latent_dim // 2
            self.label_fc = nn.Linear(num_classes, latent_dim - half)  # GAN-INT-CLS: half of z from the label
        self.stem = nn.Linear(latent_dim, self.specs[0].dim if self.specs[0].r == 1 else latent_dim)
        dim = self.stem.out_features
        self.increasers, self.stage_blocks = nn.ModuleList(), nn.ModuleList()
        for i, (s, mode) in enumerate(zip(self.specs, self.increaser_modes, strict=True)):
            self.increasers.append(PointIncreaser(dim, s.dim, s.r, mode=mode, single=i == 0))  # stage 1 reads 1 point
            self.stage_blocks.append(_blocks(s, heads, head_dim, mlp_r, layer_scale, init, act=act))
            dim = s.dim
        self.norm = PointGroupNorm(dim)
        self.to_colour = nn.Linear(dim, c)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        y = self.check_labels(y)
        if self.num_classes:  # GAN-INT-CLS: (N, half) of z, then (N, latent_dim - half) from the label
            half = self.latent_dim // 2
            z = torch.cat([z[:, :half], self.label_fc(F.one_hot(y, self.num_classes).float())], 1)
        p, h, w = self.stem(z).unsqueeze(1), 1, 1  # (B, 1, D): one point
        for inc, blocks in zip(self.increasers, self.stage_blocks, strict=True):
            p, h, w = inc(p, h, w)  # (B, h*w, D)
            for blk in blocks:
                p = blk(p, h, w)
        return torch.tanh(points_to_image(self.to_colour(self.norm(p)), h, w))


class CoCDiscriminator(Discriminator):
    """CoC discriminator: Point Reducers and Context Cluster blocks, then a linear head.

    Args:
        stages: "r:dim:depth[:regions[:centers]],...", r the reduction rate a side (it must
            divide the lattice), dim the point width, regions and centers a side (default 1, 2)
        heads: clustering heads of every Context Cluster block
        head_dim: width of each head's similarity and value spaces
        mlp_r: hidden-width ratio of every block's point-wise MLP
        layer_scale: initial layer-scale of both residual branches of every block
        cond_head: conditional head (with num_classes > 0): "projection" (<embed(y), features>
            added to the logit) or "multihead" (one logit per class, the label picks it)
        init: initialisation of every block's MLP and of the head's linear layer: "official"
            (the official Context Clusters code's truncated normal, std 0.02, zero biases) or
            "torch" (PyTorch's default)
        reducer: Point Reducers: "cell" (each anchor reads its r x r cell), "overlap" (the
            official code's overlapping neighbourhoods: 3x3 around every r-th point for r <= 2,
            zero padding; at stride 2 alternate rows are read once and twice) or "even" (each
            anchor reads the 2r x 2r window centred on its cell, the 16 nearest points at
            r = 2, so every point is read by 4 anchors); one value for every stage or a comma
            list, one per stage; "" = the official layout: "cell" for the first stage,
            "overlap" for the others
        drop_path: stochastic depth (timm's DropPath) of the blocks' residual branches, rising
            linearly from 0 at the first block to this rate at the last, as in the official
            code (0 = off, the default)
        label_stage: with num_classes > 0, the stage (1 = the first, the default) after whose
            Point Reducer a linear map of the one-hot label is added to every point, before the
            stage's blocks: GAN-INT-CLS's label replicated over the lattice and concatenated to
            every point (a linear layer over [point, label] adds one vector per class); 0 = off,
            the label enters only through the head; ignored without classes. ``features(x)``
            (self-conditioning, diagnostics) has no label: it adds the mean of the classes'
            vectors, so the points keep the offset D was trained with
        act: activation of every block's MLP: "gelu" (the official code's) or "leaky_relu"
            (slope 0.2, which bends at 0 at any scale; under WGAN clipping at 0.01 it did no
            better than GELU, docs/coc.md)
    """

    #: WGAN clipping of every parameter would clamp the blocks' layer scales and GroupNorm gains
    #: to the clip bound, so the residual branches never outgrow it and the critic stays the
    #: near-linear function of its reducers (samples: one noise texture); clip weights only.
    clip_params = "weights"
    #: and at 0.1 rather than the WGAN paper's 0.01 (CoC-GAN names no bound): both matrices of a
    #: block's MLP clipped to 0.01 leave its branch tiny. 1,000 Fashion-MNIST steps, layer scale 1e-5
    #: in G: fid_lenet 243 +- 10 at 0.01 (235, 254, 240), 220 +- 89 at 0.05 (209, 137, 314), seeds 0
    #: to 2; LeakyReLU instead of GELU at 0.01 (act=leaky_relu): 242 +- 42. With cocgan's
    #: wasserstein_opt, seeds 0 to 3: 137 +- 46 at 0.05 (88, 180, 109, 173), 108 +- 49 at 0.1
    #: (172, 56, 117, 89; 1.18x DCGAN's WGAN). Seeds move it more than the bound does; a run trained
    #: again moves by as much (docs/coc.md, "The WGAN version's clip bound")
    clip_bound = 0.1
    #: trained with spectral norm and a lazy R1 penalty of weight 1 (every 16 D steps) unless the
    #: run names its regularizers (``--reg none``: none) or its loss is a Wasserstein one (clipping,
    #: as CoC-GAN's WGAN version). Over two seeds of 1,000 unconditional steps spectral norm took
    #: fid_lenet from 150 +- 48 to 123 +- 8 and R1 on top of it to 105 +- 13; at 3,000 steps R1 kept
    #: the seed that collapsed under spectral norm alone (docs/coc.md, "Spectral norm and R1 on D").
    #: Conditional runs get GAN-CLS's mismatch term too (the paper follows GAN-INT-CLS): with the
    #: label on D's first stage it took label agreement from 0.51 to 0.81 at 1,000 steps (seeds 0, 1;
    #: a third seed reached 0.61, so 0.75 over three); at half weight the same three seeds gave 0.82,
    #: 0.80 and 0.72 (0.78) and fid_lenet 68.4 against 76.8, and a fourth seed 0.76 (0.77 over four; docs/coc.md,
    #: "Which network ignores the label?")
    default_reg = ("sn", "r1", "mismatch")
    default_reg_opt = {"r1": {"weight": 1.0}, "mismatch": {"weight": 0.5}}

    def __init__(self, *, image_shape: tuple[int, ...], num_classes: int = 0, stages: str = D_DEFAULT_STAGES,
                 heads: int = 4, head_dim: int = 32, mlp_r: int = 8, layer_scale: float = 1e-5,
                 cond_head: str = "projection", init: str = "official", reducer: str = "", drop_path: float = 0.0,
                 label_stage: int = 1, act: str = "gelu"):
        super().__init__(image_shape=image_shape, num_classes=num_classes, cond_head=cond_head)
        c, size = self.require_image("coc discriminator")
        self.init = check_init(init)
        self.specs = parse_stages(stages)
        total = sum(s.depth for s in self.specs)  # the official "stochastic depth decay rule"
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]
        self.reducer_modes = parse_modes(reducer, len(self.specs), "reducer", "coc", REDUCER_MODES)
        side, dim = size, c + 2  # points carry colour and coordinates
        self.reducers, self.stage_blocks = nn.ModuleList(), nn.ModuleList()
        for s, mode in zip(self.specs, self.reducer_modes, strict=True):
            if side % s.r:
                raise ShapeError(f"coc stage {s}: rate {s.r} does not divide the {side}x{side} lattice")
            side //= s.r
            if side % s.regions:
                raise UsageError(f"coc stage {s}: {s.regions} regions do not divide its {side}x{side} lattice")
            self.reducers.append(PointReducer(dim, s.dim, s.r, mode=mode))
            self.stage_blocks.append(_blocks(s, heads, head_dim, mlp_r, layer_scale, init, rates[:s.depth], act))
            rates = rates[s.depth:]
            dim = s.dim
        self.norm = PointGroupNorm(dim)
        self.init_head(dim)
        if init == "official":  # the official model initialises its classifier head like the MLPs
            official_init_(self.head.linear)
        if not 0 <= int(label_stage) <= len(self.specs):
            raise UsageError(f"coc option label_stage={label_stage}: valid: 0 (off) to {len(self.specs)}, "
                             f"the number of stages")
        self.label_stage = int(label_stage) if num_classes else 0
        if self.label_stage:  # a linear layer on one-hot labels, so spectral norm reaches it too
            self.label_fc = nn.Linear(num_classes, self.specs[self.label_stage - 1].dim, bias=False)
            if init == "official":
                official_init_(self.label_fc)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``(N, D)`` features; with labels ``y`` and ``label_stage``, those D's head reads for
        them, without (self-conditioning, diagnostics) the mean of the classes' vectors instead."""
        _, _, h, w = x.shape
        p = image_to_points(x)  # (B, H*W, C+2)
        for i, (red, blocks) in enumerate(zip(self.reducers, self.stage_blocks, strict=True), 1):
            p, h, w = red(p, h, w)
            if i == self.label_stage:  # the label's vector on every point: (B or 1, 1, D)
                onehot = (F.one_hot(y.long(), self.num_classes).to(p.dtype) if y is not None
                          else p.new_full((1, self.num_classes), 1 / self.num_classes))  # no label: their mean
                p = p + self.label_fc(onehot).unsqueeze(1)
            for blk in blocks:
                p = blk(p, h, w)
        return self.norm(p).mean(1)  # (B, D)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        y = self.check_labels(y)  # a conditional D needs labels (one-line UsageError)
        return self.head(self.features(x, y), y)
