# The production image: API, migrations and backfill workers run from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv
RUN useradd --create-home --uid 10001 app
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY flags ./flags
COPY backfill ./backfill
COPY migrations ./migrations
RUN pip install .
# DATA_DIR: the console's sessions (one file each, shared by the uvicorn workers); the
# installed package's default (.data next to site-packages) is not writable by `app`.
ENV DATA_DIR=/srv/data
RUN mkdir -p /srv/data && chown app /srv/data
USER app
EXPOSE 8000
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
