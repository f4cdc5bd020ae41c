"""`/api/products/{product_id}/images`: read and change a product's images (dual-written).

Over 300 lines because each route carries its OpenAPI description (responses, examples);
the logic is in the services."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import anyio
from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    Form,
    Response,
    UploadFile,
    status,
)
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.deps import EngineDep, ServicesDep, TenantId, TenantUnit
from app.api.errors import ERROR_RESPONSES
from app.api.products.schemas import NoNul, ProductIdPath
from app.core.security import now_utc
from app.images import Image
from app.images.operations import UNSET
from app.images.validation import MAX_ALT_TEXT, MAX_TAG_LENGTH, MAX_TAGS, TAG_PATTERN
from app.services.file_service import FileService
from app.services.image_reads import ImageList
from app.services.media_gc import MediaLifecycle
from app.services.product_image_service import (
    LabelNotFound,
    NewImage,
    ProductImageService,
)
from app.services.product_service import get_product
from app.storage.ownership import upload_prefix

router = APIRouter(
    prefix="/api/products/{product_id}/images", tags=["images"], responses=ERROR_RESPONSES
)
READ_PATH_HEADER = "X-Images-Read-Path"
_READ_HEADERS = {
    READ_PATH_HEADER: {"description": "jsonb or table: the representation that answered"}
}

Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN, max_length=MAX_TAG_LENGTH)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
AltText = Annotated[str, Field(max_length=MAX_ALT_TEXT), NoNul]
Url = Annotated[str, Field(min_length=1, max_length=2048)]


def image_service(services: ServicesDep) -> ProductImageService:
    """The app's ProductImageService."""
    return services.images


def file_service(services: ServicesDep) -> FileService:
    """The app's FileService."""
    return services.files


def media_lifecycle(services: ServicesDep) -> MediaLifecycle:
    """Attach checks, quota and removal of stored objects, on the app's storage."""
    return services.media


Images = Annotated[ProductImageService, Depends(image_service)]
Files = Annotated[FileService, Depends(file_service)]
Media = Annotated[MediaLifecycle, Depends(media_lifecycle)]


class ImageOut(BaseModel):
    """One image, every field, the same in both representations."""

    id: UUID
    url: str
    order: int
    is_label: bool
    alt_text: str | None
    tags: list[str]
    mime_type: str | None
    file_size: int | None
    width: int | None
    height: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, image: Image) -> ImageOut:
        """From the core record."""
        return cls(
            id=image.id,
            url=image.url,
            order=image.order,
            is_label=image.is_label,
            alt_text=image.alt_text,
            tags=list(image.tags),
            mime_type=image.mime_type,
            file_size=image.file_size,
            width=image.width,
            height=image.height,
            created_at=image.created_at,
            updated_at=image.updated_at,
        )


class ImagesOut(BaseModel):
    """A product's images, in order."""

    images: list[ImageOut]


class ImageAdd(BaseModel):
    """A new image by URL (under one of the storage bases)."""

    model_config = ConfigDict(extra="forbid")

    url: Url
    alt_text: AltText | None = None
    tags: Tags = []
    is_label: bool = False
    position: Annotated[int | None, Field(ge=0, le=10_000)] = None


class ImagePatch(BaseModel):
    """Change the label flag, alt text and/or tags; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    is_label: bool | None = None
    alt_text: AltText | None = None
    tags: Tags | None = None


class ImageOrder(BaseModel):
    """The product's image ids in their new order (a permutation of the current ids)."""

    model_config = ConfigDict(extra="forbid")

    image_ids: Annotated[list[UUID], Field(max_length=1000)]


def _listed(listed: ImageList, response: Response) -> ImagesOut:
    response.headers[READ_PATH_HEADER] = listed.read_path.value
    return ImagesOut(images=[ImageOut.of(image) for image in listed.images])


@router.get("", response_model=ImagesOut, responses={200: {"headers": _READ_HEADERS}})
def list_images(
    product_id: ProductIdPath, session: TenantUnit, images: Images, response: Response
) -> ImagesOut:
    """Every image of the product, ordered."""
    return _listed(images.list_images(session, product_id=product_id), response)


@router.get("/photos", response_model=ImagesOut, responses={200: {"headers": _READ_HEADERS}})
def list_photos(
    product_id: ProductIdPath, session: TenantUnit, images: Images, response: Response
) -> ImagesOut:
    """The publishable photos: every image but the label, ordered."""
    return _listed(images.get_product_photos(session, product_id=product_id), response)


@router.get("/label", response_model=ImageOut)
def get_label(product_id: ProductIdPath, session: TenantUnit, images: Images) -> ImageOut:
    """The product's price-tag photo; 404 when it has none."""
    label = images.get_label_image(session, product_id=product_id)
    if label is None:
        raise LabelNotFound(product_id)
    return ImageOut.of(label)


@router.post(
    "",
    response_model=ImageOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        422: {
            "description": "Bad URL (another tenant's stored object, or a stored object that "
            "does not exist), too many images, bad alt text or tags"
        }
    },
)
def add_image(
    product_id: ProductIdPath,
    body: ImageAdd,
    session: TenantUnit,
    images: Images,
    media: Media,
) -> ImageOut:
    """Add an image by URL, at the end or at `position`."""
    url = images.check_url(body.url)
    get_product(session, product_id)  # 404 before judging the URL
    # Holds the object's lock until this request commits: a removal waits, then sees it.
    media.check_attachable(session, url)
    image = images.add_image(
        session,
        product_id=product_id,
        image_data=NewImage(
            url=url,
            alt_text=body.alt_text,
            tags=tuple(body.tags),
            is_label=body.is_label,
        ),
        position=body.position,
        now=now_utc(),
    )
    return ImageOut.of(image)


@router.post(
    "/upload",
    response_model=ImageOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        413: {"description": "File too large, or the tenant's storage quota is used up"},
        422: {"description": "Not an image, lies about its type, or a decompression bomb"},
    },
)
async def upload_image(
    product_id: ProductIdPath,
    tenant_id: TenantId,
    engine: EngineDep,
    session: TenantUnit,
    images: Images,
    files: Files,
    media: Media,
    file: Annotated[UploadFile, File(description="JPEG, PNG or WebP")],
    alt_text: Annotated[AltText | None, Form()] = None,
    tags: Annotated[Tags | None, Form()] = None,
    is_label: Annotated[bool, Form()] = False,
    position: Annotated[int | None, Form(ge=0, le=10_000)] = None,
) -> ImageOut:
    """Upload a file (type sniffed from its bytes), store it, then add it as an image."""
    await run_in_threadpool(get_product, session, product_id)  # 404 before storing anything
    data = await file.read(files.max_bytes + 1)
    # Counted against the tenant's quota before anything is stored (413 otherwise); a file
    # over max_bytes is refused by the upload itself, storing nothing.
    reserved = len(data) if len(data) <= files.max_bytes else 0
    await run_in_threadpool(media.reserve, engine, tenant_id, reserved)
    try:
        uploaded = await files.upload_bounded(
            data,
            key_prefix=upload_prefix(tenant_id, product_id),
            declared_content_type=file.content_type,
            filename=file.filename,
        )
        new = NewImage(
            url=uploaded.url,
            alt_text=alt_text,
            tags=tuple(tags or ()),
            is_label=is_label,
            mime_type=uploaded.mime_type,
            file_size=uploaded.file_size,
            width=uploaded.width,
            height=uploaded.height,
        )
        try:
            image = await run_in_threadpool(
                lambda: images.add_image(
                    session,
                    product_id=product_id,
                    image_data=new,
                    position=position,
                    now=now_utc(),
                )
            )
        except BaseException:
            files.discard(uploaded)  # no object without its image record
            raise
    except BaseException:
        with anyio.CancelScope(shield=True):  # a client that hung up still gets it back
            await run_in_threadpool(media.release, engine, tenant_id, reserved)
        raise
    return ImageOut.of(image)


@router.patch("/{image_id}", response_model=ImageOut)
def patch_image(
    product_id: ProductIdPath,
    image_id: UUID,
    body: ImagePatch,
    session: TenantUnit,
    images: Images,
) -> ImageOut:
    """Set or clear the label flag (one per product), change alt text and tags."""
    given = body.model_fields_set
    image = images.update_image(
        session,
        product_id=product_id,
        image_id=image_id,
        now=now_utc(),
        alt_text=body.alt_text if "alt_text" in given else UNSET,
        tags=tuple(body.tags or ()) if "tags" in given else UNSET,
        is_label=body.is_label if body.is_label is not None else UNSET,
    )
    return ImageOut.of(image)


@router.delete("/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(
    product_id: ProductIdPath,
    image_id: UUID,
    engine: EngineDep,
    session: TenantUnit,
    images: Images,
    media: Media,
    background: BackgroundTasks,
) -> Response:
    """Delete one image; the others keep their order, renumbered from 0. Its stored object
    goes too once nothing references it."""
    removed = images.delete_image(session, product_id=product_id, image_id=image_id, now=now_utc())
    # Background tasks run after the response is sent, so after this request's commit
    # (TenantUnit commits when the route returns): the check sees the image gone.
    background.add_task(media.remove_unreferenced, engine, session.tenant_id, [removed.url])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/order", response_model=ImagesOut)
def reorder_images(
    product_id: ProductIdPath, body: ImageOrder, session: TenantUnit, images: Images
) -> ImagesOut:
    """Reorder by a permutation of the product's image ids."""
    reordered = images.reorder_images(
        session, product_id=product_id, new_order=body.image_ids, now=now_utc()
    )
    return ImagesOut(images=[ImageOut.of(image) for image in reordered])
