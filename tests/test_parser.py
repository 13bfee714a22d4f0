"""The parser takes model text as it comes and keeps what is valid."""

from worker.agent.parser import parse_reply


def test_several_observations_with_prose_around() -> None:
    text = (
        "Sure! Here is what I saw.\n<observation><type>feature</type><title>Add login</title>"
        "<facts><fact>one</fact><fact>two</fact></facts><narrative>n1</narrative>"
        "<concepts><concept>pattern</concept></concepts><files_modified><file>a.py</file></files_modified>"
        "</observation>\nand also\n<observation><type>bugfix</type><title>Fix crash</title></observation> bye"
    )
    r = parse_reply(text)
    assert [o.title for o in r.observations] == ["Add login", "Fix crash"]
    assert r.observations[0].facts == ["one", "two"]
    assert r.observations[0].files_modified == ["a.py"]
    assert r.observations[0].concepts == ["pattern"]
    assert r.observations[1].type == "bugfix"
    assert not r.errors


def test_unknown_type_falls_back_and_unknown_elements_are_ignored() -> None:
    r = parse_reply("<observation><type>musing</type><mood>happy</mood><title>T</title></observation>")
    assert r.observations[0].type == "bugfix"
    assert r.observations[0].title == "T"


def test_missing_title_is_allowed_when_there_is_content() -> None:
    r = parse_reply("<observation><type>discovery</type><narrative>only a story</narrative></observation>")
    assert r.observations[0].title is None
    assert r.observations[0].narrative == "only a story"


def test_entities_and_cdata() -> None:
    r = parse_reply(
        "<observation><type>change</type><title>a &lt;b&gt; &amp; c</title>"
        "<narrative><![CDATA[if (x < 1 && y > 2) {}]]></narrative></observation>"
    )
    assert r.observations[0].title == "a <b> & c"
    assert r.observations[0].narrative == "if (x < 1 && y > 2) {}"


def test_truncated_reply_keeps_the_complete_observation() -> None:
    r = parse_reply(
        "<observation><type>feature</type><title>Whole</title></observation>"
        "<observation><type>bugfix</type><title>cut off in the mid"
    )
    assert [o.title for o in r.observations] == ["Whole"]
    assert r.errors and "truncated" in r.errors[0]


def test_nothing_parseable_is_not_a_skip() -> None:
    r = parse_reply("I am not sure what to say about that.")
    assert r.observations == [] and r.summary is None and not r.skipped and not r.saw_xml
    broken = parse_reply("<observation><type>bugfix</type><title>unterminated")
    assert broken.observations == [] and broken.errors and broken.saw_xml and not broken.skipped


def test_empty_reply_and_skip_marker_mean_nothing_worth_keeping() -> None:
    assert parse_reply("").skipped
    assert parse_reply("  <skip/> ").skipped


def test_summary_fields_and_truncated_summary() -> None:
    r = parse_reply("<summary><request>do x</request><completed>did x</completed><next_steps>y</next_steps></summary>")
    assert r.summary is not None
    assert (r.summary.request, r.summary.completed, r.summary.next_steps) == ("do x", "did x", "y")
    assert r.summary.learned is None
    cut = parse_reply("<summary><request>do x</request><completed>did")
    assert cut.summary is not None and cut.summary.request == "do x" and cut.summary.completed is None
    empty = parse_reply("<summary></summary>")
    assert empty.summary is None and empty.errors
