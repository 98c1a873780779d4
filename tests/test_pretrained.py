"""Pretrained starts end to end (issue 15): a real timm ViT and a real BERT (random weights, tiny sizes, saved locally)
into the seed model of a `k_seed > 0` run write every block tensor; BERT's tokenizer is the one pre-training and every
downstream task use; a vocabulary that disagrees is an error naming both sizes."""
import pytest, torch, timm
from transformers import BertConfig, BertModel
from vlmerge.core import VLMergeError, load_sd, save_sd, from_dict
from vlmerge.data.text import world_tokenizer, bert_tokenizer, load_tokenizer
from vlmerge.models.config import preset, agnostic
from vlmerge.models.transformer import VLTransformer
from vlmerge.models.pretrained import load_init
from vlmerge.models.keymap import load_backbone
from vlmerge.pretrain.recipe import PretrainConfig, run_pretrain, model_config

torch.set_num_threads(1)
STEPS = {'steps': 2, 'batch_size': 4, 'lr': 0.0, 'warmup': 0, 'log_every': 1, 'device': 'cpu'}  # lr 0: the weights stay the start


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    "A tiny BERT folder (model + BertTokenizerFast over the world's vocabulary) and a tiny timm ViT file."
    d = tmp_path_factory.mktemp('ckpts')
    world = world_tokenizer()
    vocab = [t for t, _ in sorted(world.get_vocab().items(), key=lambda kv: kv[1])]
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=128, max_position_embeddings=64))
    bert.save_pretrained(d/'bert'); bert_tokenizer(vocab).save_pretrained(str(d/'bert'))
    vit = timm.create_model('vit_base_patch16_224', pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    save_sd(vit.state_dict(), d/'vit.safetensors')
    return {'bert': d/'bert', 'vit': d/'vit.safetensors', 'bert_sd': bert.state_dict(), 'vit_sd': vit.state_dict(), 'vocab': vocab}


def config(init, k_seed=2, **kw):
    return from_dict(PretrainConfig, {'model': {'preset': 'tiny'}, 'data': {'source': 'world', 'size': 'tiny', 'augment': False},
                                      'k_seed': k_seed, 'init': init, 'train': STEPS, **kw}, 'test')


def expected_start(cfg, init):
    "What the seed model should start from: a fresh modality-agnostic model with `init` loaded (load_init's own work)."
    m = VLTransformer(agnostic(model_config(cfg, cfg and len(load_tokenizer(init['hf_bert'])) if 'hf_bert' in init else None)))
    load_init(m, init)
    return m.state_dict()


@pytest.mark.parametrize('which', ['hf_bert', 'timm_vit', 'both'])
def test_seed_model_takes_every_block_tensor(ckpts, tmp_path, capsys, which):
    init = {'hf_bert': str(ckpts['bert'])} if which == 'hf_bert' else {'timm_vit': str(ckpts['vit'])} if which == 'timm_vit' else \
           {'timm_vit': str(ckpts['vit']), 'hf_bert': str(ckpts['bert'])}
    data = {'source': 'world', 'size': 'tiny', 'augment': False, **({'tokenizer': str(ckpts['bert'])} if 'hf_bert' in init else {})}
    cfg = config(init, data=data)
    run_pretrain(cfg, tmp_path/'run', progress=False)
    seed = load_sd(tmp_path/'run'/'seed'/'model'/'model.safetensors')
    blocks = [k for k in seed if k.startswith('blocks.')]
    assert len(blocks) == 2 * 15                                    # every block tensor of the tiny agnostic model
    bsd, vsd = ckpts['bert_sd'], ckpts['vit_sd']
    src = 'bert' if which == 'hf_bert' else 'vit'                   # with both, the blocks come from the ViT (the study's default)
    for i in range(2):
        if src == 'bert':
            a = f'encoder.layer.{i}.'
            want = {f'blocks.{i}.attn.qkv.weight': torch.cat([bsd[a + f'attention.self.{x}.weight'] for x in ('query', 'key', 'value')]),
                    f'blocks.{i}.mlp.fc2.weight': bsd[a + 'output.dense.weight'], f'blocks.{i}.norm2.weight': bsd[a + 'attention.output.LayerNorm.weight'],
                    f'blocks.{i}.attn.v_bias': bsd[a + 'attention.self.value.bias'], f'blocks.{i}.gamma_1': torch.ones(32)}
        else:
            want = {f'blocks.{i}.attn.qkv.weight': vsd[f'blocks.{i}.attn.qkv.weight'], f'blocks.{i}.mlp.fc2.weight': vsd[f'blocks.{i}.mlp.fc2.weight'],
                    f'blocks.{i}.attn.q_bias': vsd[f'blocks.{i}.attn.qkv.bias'][:32], f'blocks.{i}.gamma_2': torch.ones(32)}
        for k, v in want.items(): assert torch.equal(seed[k], v), k
    ref = expected_start(cfg, init)                                  # and every other tensor the loaders wrote
    for k in blocks: assert torch.equal(seed[k], ref[k]), k
    if 'hf_bert' in init: assert torch.equal(seed['text_embed.word_embeddings.weight'], bsd['embeddings.word_embeddings.weight'])
    out = capsys.readouterr().out
    assert '-> the modality-agnostic model' in out and 'blocks.shared: 30' in out, out
    w0 = load_sd(tmp_path/'run'/'pretrain'/'model'/'w0.safetensors')     # the experts start at the seed
    assert torch.equal(w0['blocks.1.mlp.fc2.weight'], seed['blocks.1.mlp.fc2.weight'])


def test_naive_start_every_expert_from_bert(ckpts, tmp_path, capsys):
    cfg = config({'hf_bert': str(ckpts['bert'])}, k_seed=0, data={'source': 'world', 'size': 'tiny', 'augment': False, 'tokenizer': str(ckpts['bert'])})
    run_pretrain(cfg, tmp_path/'run', progress=False)
    sd = load_sd(tmp_path/'run'/'pretrain'/'model'/'model.safetensors')
    for e in ('v', 'l', 'vl'):
        assert torch.equal(sd[f'blocks.1.mlp.{e}.fc2.weight'], ckpts['bert_sd']['encoder.layer.1.output.dense.weight'])
    assert '-> the modality-specific model (specific)' in capsys.readouterr().out
    base = config({'timm_vit': str(ckpts['vit'])}, k_seed=0, stage='agnostic')      # the modality-agnostic baseline
    run_pretrain(base, tmp_path/'base', progress=False)
    sd = load_sd(tmp_path/'base'/'pretrain'/'model'/'model.safetensors')
    assert torch.equal(sd['blocks.0.attn.qkv.weight'], ckpts['vit_sd']['blocks.0.attn.qkv.weight'])
    assert '-> the modality-agnostic model: 36 tensors written' in capsys.readouterr().out
    bad = config({'timm_vit': str(ckpts['vit']), 'experts': {'timm_vit': ['v']}}, k_seed=0)
    with pytest.raises(VLMergeError, match="init.experts: the recipe starts every expert from one W0"):
        run_pretrain(bad, tmp_path/'bad', progress=False)


def test_vocabulary_mismatch_names_both_sizes(ckpts, tmp_path):
    n = len(world_tokenizer())
    big = BertModel(BertConfig(vocab_size=n + 7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128))
    big.save_pretrained(tmp_path/'bert')
    with pytest.raises(VLMergeError, match=f"the BERT vocabulary has {n + 7} tokens but the model's vocab_size is {n}"):
        run_pretrain(config({'hf_bert': str(tmp_path/'bert')}), tmp_path/'run', progress=False)


def test_bert_tokenizer_in_pretraining_and_every_task(ckpts, tmp_path):
    from vlmerge.evaluate import TaskData, task_tokenizer, task_collate, load_task_data
    from vlmerge.finetune import FinetuneConfig, run_finetune
    from vlmerge.heads import TASKS
    data = {'source': 'world', 'size': 'tiny', 'augment': False, 'tokenizer': str(ckpts['bert'])}
    folder = run_pretrain(config({'hf_bert': str(ckpts['bert'])}, k_seed=0, data=data), tmp_path/'run', progress=False)
    saved = load_tokenizer(folder)                                   # the model folder keeps BERT's tokenizer
    assert type(saved).__name__ == 'BertTokenizer' and saved.get_vocab() == load_tokenizer(ckpts['bert']).get_vocab()
    bb = load_backbone(folder)
    assert bb.cfg.vocab_size == len(ckpts['vocab'])
    for task in TASKS:
        tok = task_tokenizer(TaskData(tokenizer=str(ckpts['bert'])), folder, bb.cfg.max_text_len)
        assert type(tok).__name__ == 'BertTokenizer'
        splits, meta = load_task_data(task, TaskData()); ex = splits['train']
        batch = task_collate(task, tok, bb.cfg, num_answers=len(meta.get('answers', [])) or None)([ex[0], ex[1]])
        text = {'vqa': 'question', 'nlvr2': 'sentence', 'retrieval': 'captions'}.get(task)
        if text is None: assert 'input_ids' not in batch; continue      # image-only tasks read no text
        first = ex[0][text][0] if text == 'captions' else ex[0][text]
        ids = tok(first, truncation=True, max_length=bb.cfg.max_text_len)['input_ids']
        assert batch['input_ids'][0, :len(ids)].tolist() == ids, task
        assert tok.unk_token_id not in ids                            # real words, not [UNK]
    scores = run_finetune(from_dict(FinetuneConfig, {'task': 'vqa', 'model': str(folder), 'data': {'tokenizer': str(ckpts['bert'])},
                                                     'train': {'steps': 1, 'batch_size': 4}}), tmp_path/'ft')
    assert scores and all(0 <= v <= 1 for v in scores.values()), scores
    assert load_tokenizer(tmp_path/'ft'/'model').get_vocab() == saved.get_vocab()
    small = VLTransformer(preset('tiny', vocab_size=len(ckpts['vocab']) - 5))
    from vlmerge.pretrain.recipe import save_model
    save_model(tmp_path/'small', small)
    with pytest.raises(VLMergeError, match=f"the tokenizer has {len(ckpts['vocab'])} tokens but the model's vocab_size is {len(ckpts['vocab']) - 5}"):
        run_finetune(from_dict(FinetuneConfig, {'task': 'vqa', 'model': str(tmp_path/'small'), 'data': {'tokenizer': str(ckpts['bert'])},
                                                'train': {'steps': 1}}), tmp_path/'ft2')
