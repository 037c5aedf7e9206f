"""What each Veo model can do, in one place: the /veo command's options are built from it,
parameters are checked against it before admission (tracking.services.clean_parameters, with a
message naming the model), and the Veo fake accepts exactly what it says.

Looked up on 2026-12-06 in Google's Vertex AI model pages (docs.cloud.google.com/
gemini-enterprise-agent-platform/models/veo/3-1-generate and 3-0-generate-001, .../video/
extend-videos for extension, .../video/generate-videos-from-references for reference images,
and the REST reference VideoGenerationModelInstance for image types). Where a Vertex page says
nothing and the Gemini API's Veo page (ai.google.dev/gemini-api/docs/veo, 2026-09-17) adds a
rule, the stricter of the two is kept (Lite: 1080p only at 8 s). Left out on purpose:
4K (offered by 3.1, not by this schema's resolution CHECK) and Veo 2 (5-8 s lengths the schema
does not allow). Capabilities change: update this table, its date, and the tests with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The model recorded on requests the offline backend answers with the bundled sample video
# (veosite.settings.VEO_RECORDED_MODEL): not a generation, and every message about it says so.
SAMPLE_MODEL = "offline-sample"
SAMPLE_NOTE = "This is the bundled sample video, not a generation: this bot has no Veo credentials configured."

LENGTHS = (4, 6, 8)  # seconds: every Veo 3 model; the schema's duration CHECK says the same
BOTH_RESOLUTIONS = {"720p": LENGTHS, "1080p": LENGTHS}
EXTENSION_ADDS = 7  # seconds each extension adds
MAX_EXTENSIONS = 20  # extensions of extensions: Veo continues videos up to 148 s (8 + 20 x 7)


@dataclass(frozen=True)
class ModelCapabilities:
    """``resolutions`` maps each resolution to the lengths it is offered at."""

    durations: tuple[int, ...] = LENGTHS
    default_duration: int = 8  # what Veo uses when durationSeconds is left out
    aspect_ratios: tuple[str, ...] = ("16:9", "9:16")
    resolutions: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(BOTH_RESOLUTIONS))
    # allow_all needs Google to allow-list the project; offered anyway, since Veo's 400 names it.
    person_generation: tuple[str, ...] = ("allow_adult", "dont_allow", "allow_all")
    max_samples: int = 4  # sampleCount is 1..max_samples
    audio: bool = True
    image_input: bool = True  # a first frame (image-to-video)
    last_frame: bool = False  # a last frame as well (with a first frame only)
    extension: bool = False  # +7 s from a video it made
    reference_images: int = 0  # asset images, at most this many
    image_types: tuple[str, ...] = ("image/jpeg", "image/png")
    # An extension is asked for at this resolution and length and adds EXTENSION_ADDS seconds
    # to the video it continues (the Gemini API's Veo page: "must be 8" with extension; 720p).
    extension_resolution: str = "720p"
    extension_length: int = 8

    def lengths_at(self, resolution: str) -> tuple[int, ...]:
        return self.resolutions.get(resolution, ())


VEO_3_0 = ModelCapabilities()
VEO_3_1 = ModelCapabilities(last_frame=True, extension=True, reference_images=3)
VEO_3_1_LITE = ModelCapabilities(last_frame=True, resolutions={"720p": LENGTHS, "1080p": (8,)})

MODELS: dict[str, ModelCapabilities] = {
    "veo-3.1-generate-001": VEO_3_1,
    "veo-3.1-fast-generate-001": VEO_3_1,
    "veo-3.1-generate-preview": VEO_3_1,
    "veo-3.1-fast-generate-preview": VEO_3_1,
    "veo-3.1-lite-generate-001": VEO_3_1_LITE,
    "veo-3.1-lite-generate-preview": VEO_3_1_LITE,
    "veo-3.0-generate-001": VEO_3_0,
    "veo-3.0-fast-generate-001": VEO_3_0,
    "veo-3.0-generate-preview": VEO_3_0,
    "veo-3.0-fast-generate-preview": VEO_3_0,
}
# A model this table does not know yet (configured by VEO_MODEL): what every Veo 3 model does,
# nothing optional. Veo itself still has the last word, with a 400 that names the parameter.
UNKNOWN = ModelCapabilities(image_input=False)


def of(model: str) -> ModelCapabilities:
    return MODELS.get(model, UNKNOWN)


def defaults_problem(*, model: str, duration: int, resolution: str, ratio: str) -> str | None:
    """Why the configured defaults would have every plain /veo refused by ``model``, or None."""
    can = of(model)
    if duration not in can.lengths_at(resolution):
        offered = " or ".join(str(length) for length in can.lengths_at(resolution)) or "no length"
        return (
            f"VEO_DEFAULT_DURATION={duration} with VEO_DEFAULT_RESOLUTION={resolution}: {model} makes"
            f" {resolution} videos only {offered} seconds long"
        )
    if ratio not in can.aspect_ratios:
        return f"VEO_DEFAULT_RATIO={ratio}: {model} offers {', '.join(can.aspect_ratios)}"
    return None
