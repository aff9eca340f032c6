from django.urls import path

from chat import api, views
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
]
