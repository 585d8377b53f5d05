"""styles.csv: apply, save/reload round trip, extract back out, corrupt files kept."""
import doctest

from modules import styles
from modules.styles import StyleDatabase


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_doctests():
    assert doctest.testmod(styles).failed == 0


def test_apply_with_and_without_placeholder(tmp_path):
    db = StyleDatabase(write(tmp_path / "styles.csv",
                             'name,prompt,negative_prompt\n'
                             'wrap,"masterpiece, {prompt}, 4k",blurry\n'
                             'tail,oil painting,"lowres, {prompt}"\n'))
    assert db.apply_styles_to_prompt("a cat", ["wrap"]) == "masterpiece, a cat, 4k"
    assert db.apply_styles_to_prompt("a cat", ["wrap", "tail"]) == "masterpiece, a cat, 4k, oil painting"
    assert db.apply_styles_to_prompt("", ["tail"]) == "oil painting"
    assert db.apply_negative_styles_to_prompt("ugly", ["wrap", "tail"]) == "lowres, ugly, blurry"
    assert db.apply_styles_to_prompt("a cat", ["missing"]) == "a cat" and db.unknown(["missing"]) == ["missing"]


def test_save_reload_round_trip_keeps_quotes_commas_newlines(tmp_path):
    path = tmp_path / "sub" / "styles.csv"
    db = StyleDatabase(path)
    assert db.styles == {}
    db.set("quoted", 'say "hi", {prompt}', "a,b\nc")
    db.set("plain", "x")
    db.save()
    again = StyleDatabase(path)
    assert again.styles == db.styles and list(again.styles) == ["quoted", "plain"]
    assert [p.name for p in path.parent.iterdir()] == ["styles.csv"]  # no temporary file left
    again.delete("plain")
    again.save()
    assert list(StyleDatabase(path).styles) == ["quoted"]


def test_a1111_file_with_bom_and_old_text_column(tmp_path):
    bom = write(tmp_path / "a.csv", "\ufeffname,prompt,negative_prompt\nA, cinematic ,\n")
    assert StyleDatabase(bom).styles["A"].prompt == "cinematic "
    old = write(tmp_path / "b.csv", "name,text\nB,retro\n")
    assert StyleDatabase(old).styles["B"].prompt == "retro"


def test_extract_styles_back_out(tmp_path):
    db = StyleDatabase(tmp_path / "styles.csv")
    db.set("wrap", "masterpiece, {prompt}, 4k", "blurry")
    db.set("tail", "oil painting", "lowres")
    prompt = db.apply_styles_to_prompt("a cat", ["wrap", "tail"])
    negative = db.apply_negative_styles_to_prompt("ugly", ["wrap", "tail"])
    assert db.extract_styles_from_prompt(prompt, negative) == (["wrap", "tail"], "a cat", "ugly")
    assert db.extract_styles_from_prompt("a dog", "") == ([], "a dog", "")
    # the negative prompt must match too
    assert db.extract_styles_from_prompt("a cat, oil painting", "nothing") == ([], "a cat, oil painting", "nothing")


def test_corrupt_file_is_backed_up_before_saving(tmp_path):
    path = write(tmp_path / "styles.csv", "name,prompt\nA,x,unexpected extra cell\n")
    db = StyleDatabase(path)
    assert db.styles == {} and "could not be read" in db.messages[0]
    backups = list(tmp_path.glob("styles.csv.corrupt-*.bak"))
    assert len(backups) == 1 and "unexpected extra cell" in backups[0].read_text()
    db.set("new", "y")
    db.save()
    assert list(StyleDatabase(path).styles) == ["new"]
    no_name = write(tmp_path / "other.csv", "title,prompt\nA,x\n")
    assert StyleDatabase(no_name).messages and list(tmp_path.glob("other.csv.corrupt-*.bak"))
