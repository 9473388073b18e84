"""world_facts: capitals and continents of well-known countries (about 300 items).

Three kinds of question per country: its capital, the country of a capital, its continent. The
kind is the item's subject, the country its entity.
Countries whose capital or continent is commonly disputed or ambiguous (several capitals, a
capital being moved, a transcontinental country) are left out of the questions that would be
ambiguous.
"""

from __future__ import annotations

from neuronjax.tasks.builtin.common import assemble, pick_distractors, rng_for
from neuronjax.tasks.schema import Item

# (country, capital or None when ambiguous, continent or None when transcontinental)
COUNTRIES = (
    ("France", "Paris", "Europe"),
    ("Germany", "Berlin", "Europe"),
    ("Italy", "Rome", "Europe"),
    ("Spain", "Madrid", "Europe"),
    ("Portugal", "Lisbon", "Europe"),
    ("the United Kingdom", "London", "Europe"),
    ("Ireland", "Dublin", "Europe"),
    ("the Netherlands", "Amsterdam", "Europe"),
    ("Belgium", "Brussels", "Europe"),
    ("Switzerland", "Bern", "Europe"),
    ("Austria", "Vienna", "Europe"),
    ("Poland", "Warsaw", "Europe"),
    ("the Czech Republic", "Prague", "Europe"),
    ("Hungary", "Budapest", "Europe"),
    ("Greece", "Athens", "Europe"),
    ("Sweden", "Stockholm", "Europe"),
    ("Norway", "Oslo", "Europe"),
    ("Denmark", "Copenhagen", "Europe"),
    ("Finland", "Helsinki", "Europe"),
    ("Iceland", "Reykjavik", "Europe"),
    ("Ukraine", "Kyiv", "Europe"),
    ("Romania", "Bucharest", "Europe"),
    ("Bulgaria", "Sofia", "Europe"),
    ("Serbia", "Belgrade", "Europe"),
    ("Croatia", "Zagreb", "Europe"),
    ("Slovakia", "Bratislava", "Europe"),
    ("Slovenia", "Ljubljana", "Europe"),
    ("Estonia", "Tallinn", "Europe"),
    ("Latvia", "Riga", "Europe"),
    ("Lithuania", "Vilnius", "Europe"),
    ("Albania", "Tirana", "Europe"),
    ("Belarus", "Minsk", "Europe"),
    ("Russia", "Moscow", None),
    ("Turkey", "Ankara", None),
    ("Japan", "Tokyo", "Asia"),
    ("China", "Beijing", "Asia"),
    ("South Korea", "Seoul", "Asia"),
    ("North Korea", "Pyongyang", "Asia"),
    ("India", "New Delhi", "Asia"),
    ("Pakistan", "Islamabad", "Asia"),
    ("Bangladesh", "Dhaka", "Asia"),
    ("Nepal", "Kathmandu", "Asia"),
    ("Bhutan", "Thimphu", "Asia"),
    ("Thailand", "Bangkok", "Asia"),
    ("Vietnam", "Hanoi", "Asia"),
    ("Cambodia", "Phnom Penh", "Asia"),
    ("Laos", "Vientiane", "Asia"),
    ("Malaysia", "Kuala Lumpur", "Asia"),
    ("the Philippines", "Manila", "Asia"),
    ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Afghanistan", "Kabul", "Asia"),
    ("Iran", "Tehran", "Asia"),
    ("Iraq", "Baghdad", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"),
    ("Syria", "Damascus", "Asia"),
    ("Jordan", "Amman", "Asia"),
    ("Lebanon", "Beirut", "Asia"),
    ("Qatar", "Doha", "Asia"),
    ("the United Arab Emirates", "Abu Dhabi", "Asia"),
    ("Oman", "Muscat", "Asia"),
    ("Uzbekistan", "Tashkent", "Asia"),
    ("Indonesia", None, "Asia"),
    ("Sri Lanka", None, "Asia"),
    ("Egypt", "Cairo", "Africa"),
    ("Kenya", "Nairobi", "Africa"),
    ("Nigeria", "Abuja", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"),
    ("Ghana", "Accra", "Africa"),
    ("Morocco", "Rabat", "Africa"),
    ("Algeria", "Algiers", "Africa"),
    ("Tunisia", "Tunis", "Africa"),
    ("Libya", "Tripoli", "Africa"),
    ("Sudan", "Khartoum", "Africa"),
    ("Uganda", "Kampala", "Africa"),
    ("Senegal", "Dakar", "Africa"),
    ("Zimbabwe", "Harare", "Africa"),
    ("Zambia", "Lusaka", "Africa"),
    ("Angola", "Luanda", "Africa"),
    ("Mozambique", "Maputo", "Africa"),
    ("Madagascar", "Antananarivo", "Africa"),
    ("Rwanda", "Kigali", "Africa"),
    ("Somalia", "Mogadishu", "Africa"),
    ("Mali", "Bamako", "Africa"),
    ("Namibia", "Windhoek", "Africa"),
    ("Botswana", "Gaborone", "Africa"),
    ("South Africa", None, "Africa"),
    ("Tanzania", None, "Africa"),
    ("the United States", "Washington, D.C.", "North America"),
    ("Canada", "Ottawa", "North America"),
    ("Mexico", "Mexico City", "North America"),
    ("Cuba", "Havana", "North America"),
    ("Jamaica", "Kingston", "North America"),
    ("Guatemala", "Guatemala City", "North America"),
    ("Honduras", "Tegucigalpa", "North America"),
    ("Nicaragua", "Managua", "North America"),
    ("Haiti", "Port-au-Prince", "North America"),
    ("Costa Rica", "San José", "North America"),
    ("Brazil", "Brasília", "South America"),
    ("Argentina", "Buenos Aires", "South America"),
    ("Chile", "Santiago", "South America"),
    ("Peru", "Lima", "South America"),
    ("Colombia", "Bogotá", "South America"),
    ("Venezuela", "Caracas", "South America"),
    ("Ecuador", "Quito", "South America"),
    ("Paraguay", "Asunción", "South America"),
    ("Uruguay", "Montevideo", "South America"),
    ("Guyana", "Georgetown", "South America"),
    ("Suriname", "Paramaribo", "South America"),
    ("Bolivia", None, "South America"),
    ("Australia", "Canberra", "Oceania"),
    ("New Zealand", "Wellington", "Oceania"),
    ("Fiji", "Suva", "Oceania"),
    ("Papua New Guinea", "Port Moresby", "Oceania"),
    ("Samoa", "Apia", "Oceania"),
)

CONTINENTS = ("Europe", "Asia", "Africa", "North America", "South America", "Oceania")


def _display(country: str) -> str:
    """The country as an option: without a leading 'the', capitalised."""
    return country[4:] if country.startswith("the ") else country


def generate(seed: int = 0) -> list[Item]:
    rng = rng_for("world_facts", seed)
    capitals = [c for _, c, _ in COUNTRIES if c]
    countries = [_display(n) for n, c, _ in COUNTRIES if c]
    questions = []
    for country, capital, continent in COUNTRIES:
        name = _display(country)  # every question about a country records it as its entity
        if capital:
            distractors = pick_distractors(capital, capitals, rng)
            questions.append((f"What is the capital of {country}?", capital, distractors, "capital", name))
            distractors = pick_distractors(name, countries, rng)
            questions.append((f"{capital} is the capital of which country?", name, distractors, "country", name))
        if continent:
            distractors = pick_distractors(continent, CONTINENTS, rng)
            questions.append((f"On which continent is {country}?", continent, distractors, "continent", name))
    return assemble("world_facts", questions, seed)
