"""A synthetic YouTube-8M: official file format, no download, a known generative model.

The files are exactly the official ones (frame-level ``SequenceExample`` shards, 2019
segment-rated shards, video-level ``Example`` shards, ``vocabulary.csv``,
``segment_label_ids.csv``), so every reader, dequantization and padding path of vidistill runs as
it would on the real data. Only the numbers inside are made up, by the model below.

The generative model, in words
------------------------------
*The world* (fixed by the seed). Classes are ranked by frequency: class ``c`` is picked with
probability proportional to ``1 / (c + frequency_offset)``, a long tail as in YT8M (index 0 is
the most frequent class, as in the real vocabulary). Classes are grouped at random into
``num_clusters`` clusters. Each class has a prototype direction in the 1024-d rgb space and one in
the 128-d audio space; a share ``cluster_share`` of each direction (in squared cosine) is the
cluster's common direction, so classes of one cluster are confusable. The rgb prototype has norm
``signal_amplitude``, the audio one ``signal_amplitude * audio_strength`` (audio is weaker but
informative, and 128 dimensions leave its prototypes less orthogonal). The world also holds a
global mean feature, a few generic intro templates, a few credits-like outro templates and a set
of background "scene" directions shared by all classes. A random subset of
``num_segment_classes`` classes forms the segment-task whitelist.

*A video* (fixed by seed, split and index, so any video can be regenerated alone):

1. Length ``n`` ~ Normal(``mean_frames``, ``std_frames``) rounded, clipped to
   [``min_frames``, ``max_frames``]; one frame is one second.
2. True labels: 1 + Binomial(``max_labels - 1``, ``label_count_p``) classes (1-5, 2.4 on
   average with the defaults). The first ("topic") is drawn from the frequency prior (from the
   whitelisted classes in segment-rated splits); each further label comes from the topic's
   cluster with probability ``same_cluster_label_prob``, else from the whole prior.
3. Timeline: with probability ``intro_prob`` an intro takes the first 10-30% of the frames, with
   probability ``outro_prob`` an outro takes the last 10-30% (videos under 10 frames have
   neither). The body between them is cut into shots of ``min_shot_frames``-``max_shot_frames``
   frames.
4. Evidence: each true label has a presence rate drawn in [``min_label_presence``,
   ``max_label_presence``] and appears in that share of body shots (at least one), at an amplitude
   drawn per shot in [``min_amplitude``, ``max_amplitude``]. The video also has 1 to
   ``max_distractor_classes`` distractor classes (not labels); a body shot with no label shows one
   of them with probability ``distractor_prob``, at ``distractor_amplitude`` times the usual
   amplitude. Intros and outros carry only a faint trace (``intro_outro_evidence``) of the topic.
   Each video bends each of its class prototypes by a random vector (``instance_variation``), so
   no two videos show a class identically.
5. Features: frame = global mean + video offset (``video_noise``) + unit mean + frame noise
   (``frame_noise``), where a unit is a body shot (shot noise ``shot_noise``, a background scene
   direction of norm about ``background_amplitude``, the sum of its classes' amplitudes times
   their prototypes), or the intro / outro (one of the templates plus a per-video jitter
   ``template_jitter``, plus the faint topic trace). Noise values are per dimension standard
   deviations; the per-frame noise is a 256-level discretized standard normal (indexed by random
   bytes, several times faster than Gaussian sampling and invisible after uint8 quantization).
   Features are quantized like YT8M: clipped to [-2, 2], byte = round((x + 1.9921875) * 255 / 4).
6. Labels as written: training labels are noisy, like YT8M's machine-made ones: each true label
   is dropped with probability ``label_drop_rate`` and a spurious label (drawn from the prior) is
   added to a share ``spurious_label_rate`` of the videos. Evaluation splits carry the true labels
   unless ``noisy_eval_labels`` is set (real YT8M validate/test labels are machine-made too).
7. Segment ratings (segment-rated splits only) imitate the 2019 human ratings (model in
   :mod:`vidistill.data.synthetic.ratings`; ratings are drawn last, so they change no frame). For
   up to ``rated_classes_per_video`` whitelisted true labels (one: about 5 rated segments per
   video, as in the real release), up to ``positive_segments_per_class`` 5-frame segments
   (starting at a multiple of 5) in which the class is visible in at least
   ``min_positive_frames`` frames are rated 1.0 (default 1 frame: the rater is asked whether the
   segment *contains* the class, so segments catching the edge of a shot count, as on the real
   fixed 5-second grid), and up to ``negative_segments_per_class`` segments of the same video in
   which it is not visible at all are rated 0.0; a share ``confusable_negative_share`` of those
   negatives shows a class of the rated class's cluster (real negatives were a model's plausible
   guesses, not random footage). Each rating is then flipped with probability ``rating_noise``
   (raters err). "Visible" means an evidence amplitude of at least :data:`VISIBLE_EVIDENCE`.
   In rated videos only, a share ``weak_evidence_share`` of the label shots is shown weakly
   (amplitude between :data:`VISIBLE_EVIDENCE` and ``min_amplitude``: small, distant or partly
   hidden objects a rater still marks), drawn from a stream of its own; frame-level splits never
   change with any rating knob. The defaults and the trials that set the difficulty are in
   ``results/segment_task.md``.

Difficulty comes from the noise levels, the cluster share, the distractors, the instance
variation, the label noise and the long tail; where class evidence sits in time (scattered shots
in a body, between an uninformative intro and outro) decides how much a model loses when it sees
only a few frames. The intro/outro probabilities and lengths set how bad the first/last frames
are: a design choice, not a finding. Results on this data are results on synthetic data.

Output layout of :func:`~vidistill.data.synthetic.writer.generate`::

    frame/train0000.tfrecord ...      frame-level, video-level labels
    frame/validate0000.tfrecord ...
    frame/test0000.tfrecord ...
    segment/validate0000.tfrecord ... frame-level plus 2019 segment ratings (segment training)
    segment/tune0000.tfrecord ...     the same kind, for checkpoint selection
    segment/test0000.tfrecord ...     the same kind, for the reported MAP@K
    video/train0000.tfrecord ...      video-level means of the dequantized frames
    video/validate0000.tfrecord ...
    video/test0000.tfrecord ...
    vocabulary.csv  segment_label_ids.csv  synthetic.json

The package's modules: :mod:`~vidistill.data.synthetic.config` (the knobs and the hash naming
a dataset), :mod:`~vidistill.data.synthetic.world` (the world),
:mod:`~vidistill.data.synthetic.generator` (one video, steps 1-6),
:mod:`~vidistill.data.synthetic.ratings` (step 7), :mod:`~vidistill.data.synthetic.writer`
(shards and metadata), :mod:`~vidistill.data.synthetic.cache` (datasets cached by config hash)
and :mod:`~vidistill.data.synthetic.cli` (``python -m vidistill.data.synthetic --out DIR ...``).

Generation is deterministic: the same config gives byte-identical files on the same machine
(every video draws from ``np.random.default_rng([seed, split, index])``; shards are written
independently, in parallel or not).
"""

from vidistill.data.synthetic.cache import dataset_dir, ensure_dataset, matches, read_metadata
from vidistill.data.synthetic.cli import main
from vidistill.data.synthetic.config import (
    FORMAT_VERSION,
    RATED_SPLITS,
    SPLITS,
    SyntheticConfig,
    config_hash,
)
from vidistill.data.synthetic.generator import SyntheticVideo, quantize, sample_video, video_id
from vidistill.data.synthetic.ratings import (
    RATING_STATS,
    VISIBLE_EVIDENCE,
    rate_segments,
    rating_stats,
)
from vidistill.data.synthetic.world import SyntheticWorld, build_world
from vidistill.data.synthetic.writer import generate, shard_range, split_files
from vidistill.features import SEGMENT_LENGTH

__all__ = [
    "FORMAT_VERSION",
    "RATED_SPLITS",
    "RATING_STATS",
    "SEGMENT_LENGTH",
    "SPLITS",
    "VISIBLE_EVIDENCE",
    "SyntheticConfig",
    "SyntheticVideo",
    "SyntheticWorld",
    "build_world",
    "config_hash",
    "dataset_dir",
    "ensure_dataset",
    "generate",
    "main",
    "matches",
    "quantize",
    "rate_segments",
    "rating_stats",
    "read_metadata",
    "sample_video",
    "shard_range",
    "split_files",
    "video_id",
]
