"""synth.py's text side: the caption tables and how a clip's plan becomes its text, MotionBase-style
(paper §3 ⑤ "Hierarchical Motion Descriptions", appendix A.2): 2-3 whole-body captions (a random subject,
one of several paraphrases per kind with fields filled from the parameters, a random connector between
segments) + one upper-body and one lower-body sentence."""

SUBJECTS = ("a person", "someone", "a man", "a woman", "the person", "a figure")
CAPTIONS = {  # kind -> verb phrases of the whole-body captions
    "stand": ("stands still", "stands in place", "is standing without moving much"),
    "walk": ("walks {dir}{speed_adv}", "takes a few{speed_adj} steps {dir}", "walks{speed_adv} {dir}",
             "moves {dir}{speed_adv} on foot"),
    "sidestep": ("walks sideways to the {side}", "side-steps to the {side}",
                 "shuffles sideways to the {side}"),
    "circle": ("walks in a circle to the {side}", "walks around in a {clock} circle",
               "walks a full circle, turning {side}"),
    "run": ("{run_verb} forward", "{run_verb} straight ahead", "goes for a {run_noun} forward"),
    "turn": ("turns {side} by {angle} degrees", "turns {angle} degrees to the {side}",
             "rotates {angle} degrees to the {side} in small steps"),
    "jump": ("jumps up and down {times}", "jumps in place {times}", "does {count_word} vertical jump{s}"),
    "squat": ("squats down {times}", "does {count_word} squat{s}", "bends the knees into a squat {times}"),
    "kick": ("kicks with the {side} leg", "kicks forward with the {side} foot", "does a {side} leg kick"),
    "lunge": ("lunges forward with the {side} leg", "steps into a lunge with the {side} leg in front",
              "does a forward lunge on the {side} leg"),
    "hop": ("hops on the {side} foot {times}", "hops {times} on the {side} leg",
            "balances on the {side} leg and hops {times}"),
    "sit_down": ("sits down", "sits down on a chair", "lowers into a seated position"),
    "stand_up": ("stands up", "gets up from a chair", "rises from a seated position"),
    "wave": ("waves {the_hand}", "waves with {the_hand}", "lifts {the_hand} to wave"),
    "raise": ("raises {the_arm} above the head", "lifts {the_arm} up high",
              "puts {the_arm} up in the air and back down"),
    "clap": ("claps the hands {times}", "claps {times}", "claps {count_word} time{s} in front of the chest"),
    "punch": ("punches forward with {the_hand} {times}", "throws {count_word} punch{es} with {the_hand}",
              "boxes with {the_hand}, punching {times}"),
    "arms_out": ("stretches both arms out to the sides", "holds the arms out sideways",
                 "spreads the arms wide to the sides"),
    "reach": ("reaches forward with the {side} hand", "leans forward and reaches out with the {side} arm",
              "extends the {side} arm forward to grab something"),
    "hips": ("puts the hands on the hips", "places both hands on the hips", "rests the hands on the hips"),
    "stretch": ("raises both arms overhead and leans to the {side}, then to the {other}",
                "stretches, arms overhead, bending to the {side} and then the {other}",
                "does a side stretch with the arms up, first to the {side}, then the {other}")}
PARTS = {  # kind -> (upper-body sentence, lower-body sentence) of the part-level descriptions
    "stand": ("the arms hang relaxed at the sides", "the legs stand still with both feet on the ground"),
    "walk": ("the arms swing back and forth with the steps", "the legs take{speed_adj} steps {dir}"),
    "sidestep": ("the arms stay loose at the sides", "the legs step sideways to the {side}"),
    "circle": ("the arms swing with the steps", "the legs walk along a circle to the {side}"),
    "run": ("the bent arms pump back and forth", "the legs {run_noun} forward"),
    "turn": ("the arms hang loosely", "the feet step in place while the body turns {angle} degrees {side}"),
    "jump": ("the arms swing up with each jump", "the legs bend and push off {times}"),
    "squat": ("the arms reach forward for balance", "the knees bend deeply into a squat {times}"),
    "kick": ("the arms move out for balance", "the {side} leg swings forward in a kick"),
    "lunge": ("the arms stay near the body", "the {side} leg steps forward and both knees bend"),
    "hop": ("the arms are held out for balance", "the {other} leg is lifted, the {side} leg hops {times}"),
    "sit_down": ("the arms move forward as the body lowers", "the knees and hips bend to sit down"),
    "stand_up": ("the arms move forward as the body rises", "the legs straighten to stand up"),
    "wave": ("{the_hand} waves side to side at head height", ""),
    "raise": ("{the_arm} rises straight up and comes back down", ""),
    "clap": ("the hands come together {times} in front of the chest", ""),
    "punch": ("{the_hand} punches forward {times}", ""),
    "arms_out": ("both arms extend straight out to the sides", ""),
    "reach": ("the {side} arm reaches forward as the back bends", ""),
    "hips": ("both hands rest on the hips", ""),
    "stretch": ("both arms stretch overhead, the torso bends {side} then {other}", "")}
STILL = {  # synth.STATIC_POSES' pose -> (whole-body captions, upper-body sentence, lower-body sentence)
    "stand": (("stands still with the arms down", "stands upright, arms relaxed"), *PARTS["stand"]),
    "raise": (("stands with {the_arm} raised", "holds {the_arm} straight up"), "{the_arm} raised straight up",
              PARTS["stand"][1]),
    "arms_out": (("stands with the arms stretched out to the sides", "holds a t-pose"),
                 "both arms held straight out to the sides", PARTS["stand"][1]),
    "hips": (("stands with the hands on the hips", "stands, hands on hips"),
             "both hands on the hips, elbows out", PARTS["stand"][1]),
    "reach": (("leans forward reaching out with the {side} hand", "reaches ahead with the {side} arm"),
              "the {side} arm stretched forward, the back bent", PARTS["stand"][1]),
    "squat": (("is in a deep squat", "holds a low squat"), "the arms held forward",
              "the knees and hips deeply bent in a squat"),
    "sit": (("is sitting on a chair", "sits on a chair without moving"), "the arms resting",
            "the knees bent at a right angle, sitting"),
    "kick": (("is frozen mid-kick with the {side} leg", "holds the {side} leg up in a kick"),
             "the arms out for balance", "the {side} leg kicked up in front"),
    "lunge": (("holds a lunge with the {side} leg in front", "stays low in a {side} leg lunge"),
              "the arms near the body", "the {side} leg forward with the knee bent, the other leg behind")}
COUNT_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
TIMES = {0: "", 1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}


def _words(p):
    """Fill-in fields for the templates from a segment's parameters."""
    side, count, speed = p.get("side", ""), p.get("count", 1), p.get("speed", "normal")
    return {"dir": p.get("dir", ""), "side": side, "other": {"left": "right", "right": "left"}.get(side, ""),
            "angle": p.get("angle", ""), "clock": "counterclockwise" if side == "left" else "clockwise",
            "speed_adv": {"slow": " slowly", "normal": "", "fast": " quickly"}[speed],
            "speed_adj": {"slow": " slow", "normal": "", "fast": " quick"}[speed],
            "run_verb": {"slow": "jogs", "normal": "runs", "fast": "sprints"}[speed],
            "run_noun": {"slow": "jog", "normal": "run", "fast": "sprint"}[speed],
            "the_arm": "both arms" if side == "both" else f"the {side} arm",
            "the_hand": "both hands" if side == "both" else f"the {side} hand",
            "times": TIMES[count], "count_word": COUNT_WORDS[count],
            "s": "" if count == 1 else "s", "es": "" if count == 1 else "es"}


def _gerund(phrase):
    """'waves the left hand' -> 'waving the left hand' (only the first word changes)."""
    verb, _, rest = phrase.partition(" ")
    stem = {"claps": "clapp", "puts": "putt"}.get(verb, verb[:-2] if verb.endswith(("ches", "shes")) else
                                                   verb[:-2] if verb.endswith("es") and verb[-3] in "svcz"
                                                   else verb[:-1])
    return f"{stem}ing {rest}"


def describe(plan, rng):
    """2-3 whole-body captions (random subject, paraphrase and connector each) + part-level sentences."""
    still = STILL[plan["segments"][0]["p"]["pose"]] if plan["subset"] == "static" else None
    captions = []
    for _ in range(pick(rng, (2, 3, 3))):
        phrases = []
        for seg in plan["segments"]:
            phrase = pick(rng, still[0] if still else CAPTIONS[seg["kind"]]).format(**_words(seg["p"]))
            if seg["gesture"] and not still:
                gesture = pick(rng, CAPTIONS[seg["gesture"]]).format(**_words(seg["gp"]))
                phrase = gesture if seg["kind"] == "stand" else f"{phrase} while {_gerund(gesture)}"
            phrases.append(phrase)
        joined = "".join(pick(rng, (", then ", ", and then ", " and then ", ", after that ")) + ph
                         for ph in phrases[1:])
        captions.append(f"{pick(rng, SUBJECTS)} {phrases[0]}{joined}.")
    parts = []
    for seg in plan["segments"]:
        upper, lower = [f"held still, {s}" for s in still[1:]] if still else PARTS[seg["kind"]]
        if seg["gesture"] and not still:
            upper = PARTS[seg["gesture"]][0].format(**_words(seg["gp"]))
        parts.append((upper.format(**_words(seg["p"])), lower.format(**_words(seg["p"]))))
    return captions, {"upper": ", then ".join(u for u, _ in parts) + ".",
                      "lower": ", then ".join(low for _, low in parts) + "."}


def pick(rng, choices):
    """One of `choices`, uniformly, with one rng.integers draw (every random choice of synth's plans and
    text is one)."""
    return choices[int(rng.integers(len(choices)))]
