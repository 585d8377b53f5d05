"""Train tab: create a textual inversion embedding, then train it (A1111's elem ids and options)."""
from __future__ import annotations

import gradio as gr

from modules.context import AppContext
from modules.textual_inversion import service


def create_tab(ctx: AppContext, ui):
    with gr.Row(equal_height=False):  # the forms left, progress and results right (A1111's layout)
        with gr.Column(scale=3):
            with gr.Tabs(elem_id="train_tabs"):
                with gr.Tab("Create embedding", id="create_embedding"):
                    name = gr.Textbox(label="Name", elem_id="train_new_embedding_name")
                    init_text = gr.Textbox(label="Initialization text", value="*", elem_id="train_initialization_text")
                    vectors = gr.Slider(1, 75, value=1, step=1, label="Number of vectors per token", elem_id="train_nvpt")
                    overwrite = gr.Checkbox(False, label="Overwrite Old Embedding", elem_id="train_overwrite_old_embedding")
                    create = gr.Button("Create embedding", variant="primary", elem_id="train_create_embedding")
                with gr.Tab("Train", id="train"):
                    with gr.Row():
                        embedding = gr.Dropdown(service.embedding_names(ctx), value=None, label="Embedding",
                                                elem_id="train_embedding", scale=1)
                        refresh = gr.Button("\U0001f504", size="sm", min_width=40, scale=0,
                                            elem_id="train_refresh_embeddings")
                    with gr.Row():
                        learn_rate = gr.Textbox(label="Embedding Learning rate", value="0.005",
                                                elem_id="train_embedding_learn_rate")
                        batch_size = gr.Number(label="Batch size", value=1, precision=0, elem_id="train_batch_size")
                        gradient_step = gr.Number(label="Gradient accumulation steps", value=1, precision=0,
                                                  elem_id="train_gradient_step")
                    data_root = gr.Textbox(label="Dataset directory", elem_id="train_dataset_directory",
                                           interactive=ctx.localhost_only)
                    template = gr.Dropdown(service.template_names(), value="subject_filewords.txt",
                                           label="Prompt template", elem_id="train_template_file")
                    with gr.Row():
                        width = gr.Slider(8, 2048, value=ui.native_size, step=8, label="Width", elem_id="train_training_width")
                        height = gr.Slider(8, 2048, value=ui.native_size, step=8, label="Height",
                                           elem_id="train_training_height")
                    steps = gr.Number(label="Max steps", value=100000, precision=0, elem_id="train_steps")
                    with gr.Row():
                        preview_every = gr.Number(label="Save an image to log directory every N steps, 0 to disable",
                                                  value=500, precision=0, elem_id="train_create_image_every")
                        save_every = gr.Number(label="Save a copy of embedding to log directory every N steps, 0 to disable",
                                               value=500, precision=0, elem_id="train_save_embedding_every")
                    sampling = gr.Radio(["once", "deterministic", "random"], value="once",
                                        label="Choose latent sampling method", elem_id="train_latent_sampling_method")
                    with gr.Row():
                        interrupt = gr.Button("Interrupt", elem_id="train_interrupt_training")
                        train = gr.Button("Train Embedding", variant="primary", elem_id="train_train_embedding")
        with gr.Column(scale=2, elem_id="ti_gallery_container"):
            progress = gr.HTML(elem_id="ti_progress")
            output = gr.HTML(elem_id="ti_output")
            preview = gr.Image(label="Preview", interactive=False, elem_id="ti_preview")

    def do_create(name, init_text, vectors, overwrite):
        try:
            path = service.create(ctx, name, int(vectors), init_text, overwrite)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        return gr.update(choices=service.embedding_names(ctx), value=path.stem), f"Created: {path}"

    def do_train(embedding, learn_rate, batch_size, gradient_step, data_root, template, width, height, steps,
                 preview_every, save_every, sampling):
        fields = dict(embedding_name=embedding, learn_rate=learn_rate, batch_size=batch_size,
                      gradient_step=gradient_step, data_root=data_root, template_filename=template,
                      training_width=width, training_height=height, steps=steps, create_image_every=preview_every,
                      save_embedding_every=save_every, latent_sampling_method=sampling)
        if not ctx.localhost_only:
            raise gr.Error("training from a folder on the server is off when it listens beyond localhost")
        try:
            for kind, value in service.train_updates(ctx, fields):
                if kind == "progress":
                    yield value["text"], gr.skip(), value.get("image") or gr.skip()
                else:
                    yield "", value["text"], value.get("image") or gr.skip()
        except ValueError as e:
            raise gr.Error(str(e)) from None

    create.click(do_create, inputs=[name, init_text, vectors, overwrite], outputs=[embedding, output],
                 api_name="create_embedding")
    refresh.click(lambda: gr.update(choices=service.embedding_names(ctx)), outputs=embedding,
                  api_visibility="private")
    train.click(do_train, inputs=[embedding, learn_rate, batch_size, gradient_step, data_root, template, width, height,
                                  steps, preview_every, save_every, sampling],
                outputs=[progress, output, preview], api_name="train_embedding",
                concurrency_id="generation", concurrency_limit=None)
    interrupt.click(lambda: ctx.jobs.interrupt() and None, api_visibility="private", queue=False)
    return None
