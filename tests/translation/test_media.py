"""Media types come from translation/media.py's own table, never from the host's mime.types database.

The codecs that guess a type (Gemini fileData.mimeType for a URL, Chat's file name for inline file_data,
Responses file_data without a data: header) must give the same answer on every host.
"""

from __future__ import annotations

import mimetypes

import pytest

from translation.codec import TargetOptions
from translation.gemini.request import encode_request as gemini_encode
from translation.ir import DocumentPart, ImagePart, InlineSource, Message, Request, Role, TextPart, UrlSource
from translation.media import extension_for, media_type_for
from translation.openai_chat.request import encode_request as chat_encode
from translation.openai_responses.request import decode_request as responses_decode


@pytest.fixture
def hostile_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose mime database is wrong about everything: translation must not ask it."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("translation/ consulted the host's mimetypes database")

    for name in ("guess_type", "guess_extension", "guess_all_extensions", "init"):
        monkeypatch.setattr(mimetypes, name, refuse)


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("photo.png", "image/png"),
        ("photo.JPG", "image/jpeg"),
        ("photo.jpeg", "image/jpeg"),
        ("anim.gif", "image/gif"),
        ("pic.webp", "image/webp"),
        ("iphone.heic", "image/heic"),
        ("iphone.heif", "image/heif"),
        ("paper.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),
        ("readme.md", "text/markdown"),
        ("table.csv", "text/csv"),
        ("voice.wav", "audio/wav"),
        ("song.mp3", "audio/mpeg"),
        ("clip.mp4", "video/mp4"),
        ("clip.webm", "video/webm"),
        ("https://example.com/a/b/scan.PDF?sig=abc#page=2", "application/pdf"),
        ("gs://bucket/dir.v2/image.png", "image/png"),
    ],
)
def test_media_type_from_the_table(name: str, media_type: str) -> None:
    assert media_type_for(name) == media_type


@pytest.mark.parametrize("name", ["", "README", "archive.unknownext", ".pdf", "https://example.com/dir.pdf/file"])
def test_unknown_or_missing_extension_is_none(name: str) -> None:
    assert media_type_for(name) is None


@pytest.mark.parametrize(
    ("media_type", "extension"),
    [
        ("image/jpeg", ".jpg"),
        ("image/jpg", ".jpg"),
        ("image/png", ".png"),
        ("application/pdf", ".pdf"),
        ("text/plain; charset=utf-8", ".txt"),
        ("audio/mpeg", ".mp3"),
        ("audio/x-wav", ".wav"),
        ("Audio/WAV", ".wav"),
        ("video/mp4", ".mp4"),
        ("application/x-made-up", None),
    ],
)
def test_extension_for_media_type(media_type: str, extension: str | None) -> None:
    assert extension_for(media_type) == extension


def _request(part: ImagePart | DocumentPart) -> Request:
    return Request(model="m", messages=(Message(Role.USER, (part, TextPart("what is this?"))),))


@pytest.mark.usefixtures("hostile_host")
@pytest.mark.parametrize(
    ("part", "mime"),
    [
        (ImagePart(UrlSource("https://example.com/cat.webp?x=1")), "image/webp"),
        (DocumentPart(UrlSource("gs://bucket/report.pdf")), "application/pdf"),
        (DocumentPart(UrlSource("https://example.com/talk.mp3")), "audio/mpeg"),
        # No extension: Gemini still needs a mimeType, so images default to JPEG, documents to PDF.
        (ImagePart(UrlSource("https://example.com/image")), "image/jpeg"),
        (DocumentPart(UrlSource("https://example.com/download")), "application/pdf"),
    ],
)
def test_gemini_file_uri_gets_a_mime_type_without_the_host(part: ImagePart | DocumentPart, mime: str) -> None:
    body = gemini_encode(_request(part), TargetOptions(model="gemini-2.5-flash")).value
    file_data = body["contents"][0]["parts"][0]["fileData"]
    assert file_data == {"mimeType": mime, "fileUri": part.source.url}


@pytest.mark.usefixtures("hostile_host")
@pytest.mark.parametrize(
    ("media_type", "filename"),
    [("application/pdf", "document.pdf"), ("text/plain", "document.txt"), ("image/png", "document.png")],
)
def test_chat_file_name_extension_without_the_host(media_type: str, filename: str) -> None:
    part = DocumentPart(InlineSource(media_type, "QUJD"))
    body = chat_encode(_request(part), TargetOptions(model="gpt-4.1")).value
    file = body["messages"][0]["content"][0]["file"]
    assert file == {"file_data": f"data:{media_type};base64,QUJD", "filename": filename}


@pytest.mark.usefixtures("hostile_host")
@pytest.mark.parametrize(
    ("filename", "media_type"),
    [
        ("notes.txt", "text/plain"),
        ("data.csv", "text/csv"),
        ("paper.pdf", "application/pdf"),
        (None, "application/pdf"),
    ],
)
def test_responses_bare_file_data_typed_by_file_name(filename: str | None, media_type: str) -> None:
    file = {"type": "input_file", "file_data": "QUJD", **({"filename": filename} if filename else {})}
    body = {"model": "gpt-5", "input": [{"role": "user", "content": [file]}]}
    request = responses_decode(body).value
    (part,) = request.messages[0].parts
    assert isinstance(part, DocumentPart)
    assert part.source == InlineSource(media_type, "QUJD")
