"""Piccolo's configuration module, used by migrations (`PICCOLO_CONF=shop.piccolo_conf`)."""
from piccolo.conf.apps import AppRegistry

from shop.db import make_engine
from shop.settings import Settings

DB = make_engine(Settings.from_env().database_url)
APP_REGISTRY = AppRegistry(apps=["shop.piccolo_app"])
