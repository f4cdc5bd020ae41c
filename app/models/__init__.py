"""SQLAlchemy 2.0 typed models: `public` (shared) and `user` (one schema per tenant)."""

from app.models.base import Base
from app.models.public.user import User
from app.models.user.product import Product
from app.models.user.product_image import ProductImage, RejectedImageElement, ShadowMismatch

__all__ = ["Base", "Product", "ProductImage", "RejectedImageElement", "ShadowMismatch", "User"]
