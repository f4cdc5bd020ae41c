"""Pure core of product images: the record, its two representations, and the rules on it."""

from app.images.errors import (
    ImageError,
    ImageNotFound,
    InvalidImageField,
    NotAPermutation,
    TooManyImages,
)
from app.images.identity import IMAGE_NAMESPACE, legacy_image_id
from app.images.label_rule import LabelDecision, is_legacy_source, label_rule
from app.images.normalise import (
    REJECTION_REASONS,
    Normalised,
    RejectedElement,
    normalise_legacy,
)
from app.images.operations import (
    UNSET,
    add,
    delete,
    label,
    photos,
    reorder,
    set_label,
    update,
)
from app.images.projection import (
    element_to_image,
    image_to_element,
    image_to_row,
    row_to_image,
)
from app.images.record import IMAGE_KEYS, Image
from app.images.validation import (
    MAX_ALT_TEXT,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    TAG_PATTERN,
    validate_alt_text,
    validate_tags,
)

__all__ = [
    "IMAGE_KEYS",
    "IMAGE_NAMESPACE",
    "MAX_ALT_TEXT",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "REJECTION_REASONS",
    "TAG_PATTERN",
    "UNSET",
    "Image",
    "ImageError",
    "ImageNotFound",
    "InvalidImageField",
    "LabelDecision",
    "Normalised",
    "NotAPermutation",
    "RejectedElement",
    "TooManyImages",
    "add",
    "delete",
    "element_to_image",
    "image_to_element",
    "image_to_row",
    "is_legacy_source",
    "label",
    "label_rule",
    "legacy_image_id",
    "normalise_legacy",
    "photos",
    "reorder",
    "row_to_image",
    "set_label",
    "update",
    "validate_alt_text",
    "validate_tags",
]
