"""Request and response bodies (typed, with examples for the OpenAPI docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# a text must hold a character that is not white space, under both regex dialects that read this
# pattern: JSON Schema's (ECMA-262, which the OpenAPI document publishes) and Python's (which the
# service checks with). They disagree on a few characters (U+001C-U+001F and U+0085 are spaces to
# Python only, U+FEFF to ECMA-262 only), so those are named explicitly.
TEXT_PATTERN = r"[^\s\x1c-\x1f\x85\ufeff]"
IMAGE_DOC = "the image, base64-encoded (PNG, JPEG, WebP, BMP or GIF; a data: URL is accepted)"
# a 16 x 16 PNG (light grey, a red square): small enough for the docs, and a real image
EXAMPLE_IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAK0lEQVR42mM8ceIEAymAiYFEQHsNLMgckbAwrIrerF"
    "o1mP0wHDQwDoO0BACsRQfRhOexzQAAAABJRU5ErkJggg=="
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # OpenAPI's "byte" format: base64-encoded data
    image: str = Field(..., description=IMAGE_DOC, min_length=1, json_schema_extra={"format": "byte"})


class EntailmentRequest(_Request):
    """Body of POST /v1/entailment: an image and a hypothesis about it."""

    hypothesis: str = Field(..., description="a statement about the image")
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image": EXAMPLE_IMAGE, "hypothesis": "there are two circles."}]},
    )


class GroundingRequest(_Request):
    """Body of POST /v1/grounding: an image and an expression naming one object in it."""

    expression: str = Field(..., description="a phrase naming exactly one object")
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image": EXAMPLE_IMAGE, "expression": "the big red circle"}]},
    )


class VqaRequest(_Request):
    """Body of POST /v1/vqa: an image, a question and how many ranked answers to return."""

    question: str = Field(..., description="a question about the image")
    top_k: int = Field(5, ge=1, le=50, description="how many ranked answers to return")
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image": EXAMPLE_IMAGE, "question": "how many circles are there?"}]},
    )


class MatchingRequest(_Request):
    """Body of POST /v1/matching: an image and candidate texts to score against it."""

    texts: list[str] = Field(
        ..., min_length=1, description="candidate descriptions to score against the image"
    )
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"image": EXAMPLE_IMAGE, "texts": ["a red circle is visible.", "there is no cross."]}
            ]
        },
    )


class _Response(BaseModel):
    request_id: str
    model_version: str


class EntailmentResponse(_Response):
    """Answer of POST /v1/entailment: the most probable label and each label's probability."""

    label: str = Field(..., examples=["entailment"])
    scores: dict[str, float] = Field(
        ..., description="probabilities of entailment, neutral, contradiction (sum 1)"
    )


class GroundingResponse(_Response):
    """Answer of POST /v1/grounding: the chosen region's box and probability, or no box when the
    expression names nothing in the image."""

    box: list[float] | None = Field(
        ...,
        description="[x1, y1, x2, y2] in the original image's pixels; null when the model finds no "
        "object, or declines: `match` is below the model's calibrated threshold",
    )
    score: float = Field(
        ..., description="probability of the chosen region among the detected ones (0 with no box)"
    )
    match: float = Field(
        ..., description="probability that the expression names something in the image (image-text matching)"
    )


class Answer(BaseModel):
    """One ranked VQA answer and its probability."""

    answer: str
    score: float


class VqaResponse(_Response):
    """Answer of POST /v1/vqa: the best answer, its probability and the ranked top answers."""

    answer: str
    score: float
    top_k: list[Answer]


class MatchingResponse(_Response):
    """Answer of POST /v1/matching: a match probability per text and the index of the best."""

    scores: list[float] = Field(..., description="match probability in [0, 1], one per text")
    best: int = Field(..., description="index of the best-matching text")


class ModelInfo(BaseModel):
    """One entry of GET /v1/models: the served model, its backend and limits."""

    name: str
    version: str
    backend: str
    execution_provider: str
    tasks: list[str]
    answers: int
    max_batch_size: int


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable ``code`` and a message for people."""

    code: str = Field(..., examples=["invalid_image"])
    message: str = Field(
        ..., examples=["image could not be decoded (not an image, or an unsupported format)"]
    )


class ErrorBody(BaseModel):
    """The error envelope of every failure: ``{"error": {"code", "message"}, "request_id"}``."""

    error: ErrorDetail
    request_id: str | None = Field(None, description="the X-Request-ID of the failed request")
