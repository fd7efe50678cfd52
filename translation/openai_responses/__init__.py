"""The OpenAI Responses codec (`POST /v1/responses`, and its WebSocket mode): see translation/README.md."""
