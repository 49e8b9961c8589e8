"""Column names of the canonical data contract, in one place.

Every module refers to these constants rather than to string literals, so a rename is one edit
and a typo is an ``AttributeError`` instead of a silent empty column.
"""

from __future__ import annotations

# events
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
PRICE = "price"
SESSION_ID = "session_id"
DEVICE = "device"

# items
TITLE = "title"
CATEGORY = "category"
BRAND = "brand"
DESCRIPTION = "description"
IN_STOCK = "in_stock"
FIRST_SEEN = "first_seen"

# vocabularies
VIEW = "view"
CLICK = "click"
ADD_TO_CART = "add_to_cart"
PURCHASE = "purchase"
EVENT_TYPES: tuple[str, ...] = (VIEW, CLICK, ADD_TO_CART, PURCHASE)
DEVICES: tuple[str, ...] = ("desktop", "mobile", "tablet", "app", "other")

EVENT_COLUMNS: tuple[str, ...] = (
    USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE, QUANTITY, PRICE, SESSION_ID, DEVICE,
)
EVENT_REQUIRED: tuple[str, ...] = (USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE)
ITEM_COLUMNS: tuple[str, ...] = (
    ITEM_ID, TITLE, CATEGORY, BRAND, PRICE, DESCRIPTION, IN_STOCK, FIRST_SEEN,
)
# only the id: a title defaults to the id, a category to UNKNOWN_CATEGORY, a price to unknown
ITEM_REQUIRED: tuple[str, ...] = (ITEM_ID,)
UNKNOWN_CATEGORY = "unknown"
