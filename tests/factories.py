"""Factories that keep an object graph inside one project."""

from __future__ import annotations

import factory

from controlpanel.models import Membership, Project, Role, User
from subscribers.models import ConsentState, Subscriber

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    time_zone = "Europe/Berlin"
    default_country = "DE"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MARKETER


class SubscriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscriber

    project = factory.SubFactory(ProjectFactory)
    phone = factory.Sequence(lambda n: f"+4915112{n:06d}")
    name = factory.Faker("name")
    whatsapp_consent = ConsentState.OPTED_IN


class EmailTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "mail.EmailTemplate"

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"email-{n}")
    subject = "Hello {{ subscriber.name }}"
    html = '<p>Hi {{ tags.first_name | default: "there" }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    text = ""
    marketing = True
