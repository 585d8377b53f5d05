"""LoRA (kohya format) for SD v1/v2: `<lora:name:weight>` tags, files, weight patches for one job."""
from modules.lora.apply import LoraExtraNetworks, LoraReport, apply_loras
from modules.lora.names import Target, build_key_table
from modules.lora.network import LoraDatabase, LoraLayer, LoraNetwork, load_lora, lora_file_hash
from modules.lora.tags import ExtraNetworkParams, LoraTag, lora_tags, parse_extra_networks

__all__ = [
    "LoraExtraNetworks", "LoraReport", "apply_loras", "Target", "build_key_table", "LoraDatabase",
    "LoraLayer", "LoraNetwork", "load_lora", "lora_file_hash", "ExtraNetworkParams", "LoraTag",
    "lora_tags", "parse_extra_networks",
]
