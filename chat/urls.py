from django.urls import path, re_path

from chat import api, upload_serve, views
from chat.api.dm_views import open_dm  # direct messages
from chat.api.openapi import api_not_found, openapi
from chat.api.search_views import search_api, search_page

app_name = "chat"

urlpatterns = [
    path("", views.room_list, name="room_list"),
    path("rooms/<slug:slug>/", views.room, name="room"),
    path("search/", search_page, name="search"),
    path("api/me/", api.me, name="api_me"),
    path("api/search/", search_api, name="api_search"),
    path("api/rooms/", api.rooms, name="api_rooms"),
    path("api/rooms/<slug:slug>/", api.room, name="api_room"),
    path("api/rooms/<slug:slug>/messages/", api.messages, name="api_messages"),
    # <str:seq>, not <int:seq>: a seq that is not one is the API's 400, not a 404 page.
    path("api/rooms/<slug:slug>/messages/<str:seq>/", api.message, name="api_message"),
    path(
        "api/rooms/<slug:slug>/messages/<str:seq>/reactions/",
        api.reactions,
        name="api_reactions",
    ),
    path("api/rooms/<slug:slug>/read/", api.read, name="api_read"),
    path("api/rooms/<slug:slug>/join/", api.join, name="api_join"),
    path("api/rooms/<slug:slug>/leave/", api.leave, name="api_leave"),
    # Attachments (PROTOCOL.md): the upload API, and the files to their room's readers.
    path("api/rooms/<slug:slug>/uploads/", api.uploads, name="api_uploads"),
    path("uploads/<str:upload_id>/thumb/", upload_serve.serve_thumbnail, name="upload_thumb"),
    path("uploads/<str:upload_id>/<str:name>", upload_serve.serve_file, name="upload_file"),
    path("api/rooms/<slug:slug>/moderation/", api.moderate, name="api_moderation"),
    # Direct messages: the API and the page that opens one (chat/dms.py).
    path("api/dms/", open_dm, name="api_dms"),
    # The OpenAPI description of every /api/ path above (chat/api/openapi.py; a new one
    # is described there too: tests/unit/test_openapi.py); then any other /api/ path is
    # the protocol's JSON 404, not Django's HTML page. Keep these two after every /api/.
    path("api/openapi.json", openapi, name="api_openapi"),
    # Only paths that end in a slash: one without is left unresolved, so that Django's
    # APPEND_SLASH still redirects /api/rooms to /api/rooms/ (and /api/nope to /api/nope/,
    # which lands here).
    re_path(r"^api/(?:.*/)?$", api_not_found, name="api_not_found"),
    path("dm/<str:username>/", views.direct, name="direct"),
]
