"""Every threshold of the health rules (traintop.engine.health.monitor), in one place.

The lecture's rules of thumb ("saturation around 5%", "update:data around
1e-3") are stated for the network at init. The figures below were measured on
this engine (CPU, torch 2.13, names.txt of ../shared/reference, lecture seed,
batch 32, lr 0.1 unless said; the embedded default data raises the same
findings in every case of tests/test_health_configs.py) and each threshold
sits between what the lecture calls healthy and what it calls broken, with a
margin either side.
Healthy ones: BatchNorm on (the default) and no BatchNorm with gain 5/3 and
fan-in. "per layer" factors are geometric means over the hidden blocks:
(last / first) ** (1 / (blocks - 1)).

=====================  ==========================  =========================  ===============
figure                 healthy (measured)          pathological (measured)    threshold
=====================  ==========================  =========================  ===============
first loss / -log(1/V) BN 0.997, no-BN 1.000       no fan-in 1.14,            warn > 1.1,
                                                   linear gain 5/3 1.22,      error > 2
                                                   last-layer-scale 10:
                                                   4.1 (no-BN), 5.4 (BN)
tanh saturation %      BN 1.3-4 (to 7 at 20k st.)  gain 3: 40-50 every layer  warn > 25,
                       no-BN 5/3: layer 1 20.25,   no fan-in: 81-91           error > 40
                       deeper 5.5-8.4 at step 1,
                       10-16 by step 2,000 (layer
                       1: 21-24); crosses 25 near
                       step 6,000 as weights grow
dead units %           0 in every healthy run      no fan-in: 3-10 per layer  warn > 0 (any
                       (batch 32, up to 20k steps)                            dead unit),
                                                                              error > 10
activation std factor  BN 1.00, no-BN 5/3 0.97,    gain 0.5 0.49 (0.41 ->     shrink: warn
per layer              linear gain 1 1.00,         0.024), linear 0.5 0.50;   < 0.8, error
                       tanh gain 1 0.85-0.91       linear 5/3 1.67 (1.6 ->    < 0.6; grow:
                                                   12.8, NaN at step 7)       warn > 1.25,
                                                                              error > 1.6
gradient std factor    BN 1.15-1.17, no-BN 5/3     gain 0.5 0.50-0.52,        vanish: warn
per layer, output      1.08-1.20, gain 3 1.35-     linear 0.5 0.50;           < 0.75, error
back to input          1.40, tanh gain 1 0.87      no fan-in 2.9-3.05,        < 0.6; explode:
                                                   linear 5/3 1.70            warn > 1.5,
                                                                              error > 2
grad:data vs median    BN 0.2-0.5x (C lowest)      no-BN last layer at init:  info > 10x
of the other weights                               451x (5/3), 760x (gain 3), either way,
                                                   17x at step 200, 5-7x      warn > 1000x
                                                   from step 2,000
log10 update:data,     BN -3.0 (step 50), -2.6     lr 0.001: -5.1 (BN),       high: warn
median over 2-D        (step 300), -2.5 (2k-20k);  -5.3 (no-BN); lr 1: -1.9   > -2, error
weights of each one's  no-BN 5/3 -2.8 -> -2.4      (BN), -1.3 to -1.5         > -1; low: warn
median over the last   (its last layer alone -0.6  (no-BN); lr 0.01 (the      < -4.5, error
100 steps              -> -1.75: the outlier the   lecture's late decay)      < -6
                       grad:data rule reports)     -4.1 to -3.8; BN gain 0.5
                                                   -2.1 -> -1.9 (small
                                                   weights move relatively
                                                   more: BatchNorm moves the
                                                   gain's effect to the lr)
one step's median      peak over 2,000 steps: BN   lr 1e6: 0.0 at step 1      burst: error
log10 update:data      -2.33, no-BN 5/3 -2.27;     (BN and no-BN); lr 10:     > -0.5
over 2-D weights       lr 1 peaks -1.68 (BN),      -0.61 (BN), -0.01 (no-BN)
                       -1.15 (no-BN)               at step 2
non-finite             never                       linear gain 5/3 no-BN:     always error
                                                   NaN at step 6-7; lr 1e6
                                                   and gain 1e6 stay finite
                                                   (tanh bounds them): burst
                                                   and saturation instead
loss: median of the    BN 0.97, no-BN 5/3 0.86,    no-BN lr 1000: 1,640-      far: warn >
last 100 steps over    BN lr 1 0.86, lr 10 0.94,   1,700x; BN lr 1000: 84-    1.5x the guess,
the uniform guess      gain 3 0.89, no fan-in      91x; no-BN lr 10: 40-64x;  error > 3x;
(loss-diverging)       1.03; last-layer-scale 10   lr raised live at step     judged on a
                       (bad init) 1.30 at step     400: no-BN 0.1 -> 3 8-     full window
                       100 (2.15 at step 50: why   12x, BN 0.1 -> 30 2.3-
                       the window must be full)    2.6x
the same median over   every run above <= 1.05;    lr raised live at step     rise: warn >
its lowest of the run  no-BN lr 1 (a plateau       400: no-BN 0.1 -> 1 2.5-   1.25, error >
                       above the guess) 1.14       3.5x, BN 0.1 -> 30 2.9-    1.6
                                                   3.3x
BatchNorm running vs   after 100-20k steps: mean   after 1-3 steps: mean      warn: std >
exact (calibrate)      <= 0.21, std rel <= 0.16    1.4-1.7, std rel 0.57-0.69 0.25 or mean
                                                   after 10: 0.62 / 0.33      > 0.5; error:
                                                                              std > 0.5 or
                                                                              mean > 1
=====================  ==========================  =========================  ===============

Added for issue 25 (embedded data, fast engine, lecture seed):
- the fade over the whole chain (last std / first std): no-BN 5/3 0.86 at step 1,
  0.96 at step 60,000; BN about 1.0-1.1; tanh gain 1 no-BN 0.49 (0.629 -> 0.311,
  x0.84 per layer): warn below 0.7, error below 0.3.
- "still improving" (a grown state is then a note): the mean loss of the last
  quarter of the run against the quarter before: no-BN lr 0.1 -0.95% at 60,000
  steps (saturation 30-54%, info), and at 200,000 still improving past the decay;
  no-BN lr 0.5 -1.2% at 2,000 (saturation 32-50%); BN -1.3% at 20,000; no-BN lr 1
  sits above the uniform guess (4.7 against 3.30): not improving, the grades stand.

Every comparison is strict: a value exactly at a threshold does not fire it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    # initial-loss: first loss over the uniform guess -log(1/vocab).
    initial_loss_warn_ratio: float = 1.1
    initial_loss_error_ratio: float = 2.0

    # tanh-saturation: % of a Tanh layer's outputs with |t| > 0.97.
    saturation_warn_pct: float = 25.0
    saturation_error_pct: float = 40.0

    # dead-neurons: % of a Tanh layer's units saturated on every example of the
    # batch. Small batches make "every example" easy, so they are not judged.
    dead_warn_pct: float = 0.0
    dead_error_pct: float = 10.0
    dead_min_batch: int = 16

    # activation-shrink / -grow: per-layer factor of the output std, layer 1 to last.
    shrink_warn_factor: float = 0.8
    shrink_error_factor: float = 0.6
    # The same fade over the whole chain, first block to last (the lecture's
    # tanh gain 1 stack: 0.62 -> 0.32, x0.5 over five layers at x0.85 per layer).
    shrink_chain_warn_factor: float = 0.7
    shrink_chain_error_factor: float = 0.3
    grow_warn_factor: float = 1.25
    grow_error_factor: float = 1.6

    # gradient-vanish / -explode: per-layer factor of the std of dloss/dt as
    # the gradient travels from the last hidden layer back to the first.
    vanish_warn_factor: float = 0.75
    vanish_error_factor: float = 0.6
    explode_warn_factor: float = 1.5
    explode_error_factor: float = 2.0

    # grad-data-outlier: a 2-D parameter's grad:data ratio against the median
    # of the other 2-D parameters, as a factor in either direction.
    outlier_info_factor: float = 10.0
    outlier_warn_factor: float = 1000.0

    # update-ratio-high / -low: log10 update:data, the lecture's guide is -3.
    # "Sustained": each 2-D parameter's median over the last `update_window`
    # steps, then the median over the parameters (one outlier parameter is
    # the grad-data-outlier rule's business); judged once `update_min_steps`
    # steps are in the window.
    update_guide_log10: float = -3.0
    update_high_warn_log10: float = -2.0
    update_high_error_log10: float = -1.0
    update_low_warn_log10: float = -4.5
    update_low_error_log10: float = -6.0
    update_window: int = 100
    update_min_steps: int = 50
    # A single step whose median over the 2-D weights is above this is a
    # burst: an error at once, kept for the run (and update-ratio-low is no
    # longer judged: it would advise raising the rate that did the damage).
    update_burst_log10: float = -0.5

    # loss-diverging: the median loss over the last `loss_window` steps (taken
    # every `loss_every` steps once `loss_min_steps` are in the window) against
    # the uniform guess -log(1/vocab) ("far above"), and against the lowest
    # such median of the run so far ("rising").
    loss_far_warn_ratio: float = 1.5
    loss_far_error_ratio: float = 3.0
    loss_rise_warn_ratio: float = 1.25
    loss_rise_error_ratio: float = 1.6
    loss_window: int = 100
    loss_min_steps: int = 100
    loss_every: int = 10
    # "still improving" (health.when: a state grown while training is a note
    # while the loss goes down): the mean of those medians over the last
    # quarter of the run below the quarter before it by more than this share,
    # judged once each quarter holds `improving_min_steps` steps.
    improving_rel: float = 0.002
    improving_min_steps: int = 500

    # bn-running-stats: running estimates against a calibration's exact values.
    bn_std_warn_rel: float = 0.25    # max |running std - exact std| / exact std
    bn_std_error_rel: float = 0.5
    bn_mean_warn_abs: float = 0.5    # max |running mean - exact mean| (pre-activation units)
    bn_mean_error_abs: float = 1.0


DEFAULT_THRESHOLDS = Thresholds()
