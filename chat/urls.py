from django.urls import path

from chat import api, views

app_name = "chat"

urlpatterns = [
    path("", views.room_list, name="room_list"),
    path("rooms/<slug:slug>/", views.room, name="room"),
    path("api/rooms/", api.rooms, name="api_rooms"),
    path("api/rooms/<slug:slug>/messages/", api.messages, name="api_messages"),
]
