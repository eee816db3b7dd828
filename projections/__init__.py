"""Read models. Each projection folds the event store into PostgreSQL views with the
eventsourcing projection runner; every view write commits with its tracking record,
so a view advances exactly once per event and resumes where it stopped. A view's async
reads sit beside it (``<view>_queries``); may import ``domain``, never hub, aiohttp or asyncpg."""
