"""The legacy benchmark export: the first synthetic shape, almost all unmapped lab Observations.

`bench/make_export.py --shape legacy` writes it (figures in `bench/shapes/legacy.toml`); kept so
that figures measured on it before the realistic shape stay comparable, byte for byte: about
80 % lab and vital-sign Observations (about 1.5 KB each, none of their codes mapped), then
Encounters, Conditions, MedicationAdministrations, Procedures and Patients, each patient's
resources contiguous in one `<Type>.ndjson` per type. About 3 % of the patients are
salvage-surgery patients, 2 % have HCC without salvage surgery, 10 % carry hepatitis B.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from fhir_builders import (
    ACT_CODE,
    CLINICAL_ACTIVE,
    CONDITION_CLINICAL,
    CONFIRMED,
    CPT,
    DISCHARGE,
    DISEASE_STATUS_CODE,
    EVIDENCE_IMAGING,
    HCC_ICD10,
    HCC_SNOMED,
    ICD10,
    LOINC,
    NECROSIS_CODE,
    NO_EVIDENCE_VALUES,
    OBSERVATION_CATEGORY,
    PIAF_DAYS,
    PROBLEM_LIST,
    ROUTE_IV,
    ROUTE_SC,
    RXNORM,
    SEGMENT_CODES,
    SNOMED,
    WORSENED,
    Json,
    coding,
    concept,
    local_time,
)
from fhir_builders import ucum as quantity

FIRST_DAY = date(1995, 1, 1)
CUTOFF = date(2003, 12, 31)
LAST_HCC_ONSET = date(2001, 3, 1)  # keeps downstaging inside the study period (to June 2002)
LOCAL_LAB = "https://hospital.example/CodeSystem/lab-test"
ACCESSION = "https://hospital.example/sid/lab-accession"
MRN = "https://hospital.example/sid/mrn"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"


class Writer(Protocol):
    """Where resources go (`make_export.ExportWriter`)."""

    @property
    def total(self) -> int: ...

    def write(self, resource: Json) -> None: ...


def ref(resource_type: str, resource_id: str, display: str | None = None) -> Json:
    result = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        result["display"] = display
    return result


def clock(day: date, minute_of_day: int) -> str:
    return local_time(day, *divmod(minute_of_day, 60))


def category(code: str, display: str) -> list[Json]:
    return [concept(coding(OBSERVATION_CATEGORY, code, display), text=display)]


LABORATORY = category("laboratory", "Laboratory")
LAB_PROFILE = US_CORE + "us-core-observation-lab"
VITALS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
VITAL_SIGNS = category("vital-signs", "Vital Signs")
IMAGING = category("imaging", "Imaging")
INTERPRETATIONS = {
    flag: [concept(coding(INTERPRETATION, flag, display), text=display)]
    for flag, display in (("L", "Low"), ("N", "Normal"), ("H", "High"))
}
RESOLVED = concept(coding(CONDITION_CLINICAL, "resolved", "Resolved"))
ROUTE_PO = concept(coding(SNOMED, "26643006", "Oral route"), text="PO")
LABS_ORG = ref("Organization", "org-central-lab", "Central Laboratory")
HOSPITAL = ref("Organization", "org-hospital", "Queen Example Hospital")
WARDS = ("Medical Ward 7A", "Oncology Clinic", "Hepatology Clinic", "Day Ward", "Surgical Ward 5B")


@dataclass(frozen=True, slots=True)
class LabTest:
    """A routine numeric lab or vital sign: codes, unit, plausible values and reference range."""

    loinc: str
    display: str
    local: str
    text: str
    unit: str
    ucum: str
    low: float
    high: float
    normal: tuple[float, float]
    decimals: int
    vital: bool = False

    def draw(self, rng: random.Random) -> float:
        if not self.decimals:  # whole numbers are written as 72, not 72.0
            return rng.randint(int(self.low), int(self.high))
        return round(rng.uniform(self.low, self.high), self.decimals)

    @property
    def code(self) -> Json:
        return concept(
            coding(LOINC, self.loinc, self.display),
            coding(LOCAL_LAB, self.local, self.text),
            text=self.text,
        )


# None of these codes is in mappings/: they are the noise the cohort step must skip quickly.
LAB_TESTS = (
    LabTest("718-7", "Hemoglobin [Mass/volume] in Blood", "HGB", "Haemoglobin", "g/dL", "g/dL",
            8.5, 17.5, (12.0, 16.0), 1),
    LabTest("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "WBC",
            "White cell count", "10*3/uL", "10*3/uL", 2.5, 16.0, (4.0, 11.0), 1),
    LabTest("777-3", "Platelets [#/volume] in Blood by Automated count", "PLT", "Platelet count",
            "10*3/uL", "10*3/uL", 60, 450, (150, 400), 0),
    LabTest("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "ALT", "ALT", "U/L", "U/L", 8, 180, (7, 55), 0),
    LabTest("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "AST", "AST", "U/L", "U/L", 10, 200, (8, 48), 0),
    LabTest("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "ALP",
            "Alkaline phosphatase", "U/L", "U/L", 30, 400, (40, 129), 0),
    LabTest("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "TBIL", "Total bilirubin",
            "mg/dL", "mg/dL", 0.2, 4.5, (0.1, 1.2), 1),
    LabTest("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "ALB", "Albumin", "g/dL", "g/dL",
            2.2, 5.2, (3.5, 5.0), 1),
    LabTest("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "CREA", "Creatinine", "mg/dL",
            "mg/dL", 0.4, 3.2, (0.6, 1.3), 2),
    LabTest("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "BUN", "Urea nitrogen",
            "mg/dL", "mg/dL", 4, 60, (7, 20), 0),
    LabTest("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "NA", "Sodium", "mmol/L",
            "mmol/L", 126, 150, (135, 145), 0),
    LabTest("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "K", "Potassium", "mmol/L",
            "mmol/L", 2.9, 6.1, (3.5, 5.1), 1),
    LabTest("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "GLU", "Glucose", "mg/dL",
            "mg/dL", 60, 320, (70, 110), 0),
    LabTest("6301-6", "INR in Platelet poor plasma by Coagulation assay", "INR", "INR", "{INR}",
            "{INR}", 0.8, 3.5, (0.8, 1.2), 2),
    LabTest("8867-4", "Heart rate", "HR", "Pulse", "beats/minute", "/min", 48, 130, (60, 100), 0,
            vital=True),
    LabTest("8480-6", "Systolic blood pressure", "SBP", "Systolic BP", "mmHg", "mm[Hg]", 90, 190,
            (90, 140), 0, vital=True),
    LabTest("8462-4", "Diastolic blood pressure", "DBP", "Diastolic BP", "mmHg", "mm[Hg]", 50, 110,
            (60, 90), 0, vital=True),
    LabTest("8310-5", "Body temperature", "TEMP", "Temperature", "Cel", "Cel", 35.6, 39.4,
            (36.1, 37.5), 1, vital=True),
    LabTest("9279-1", "Respiratory rate", "RR", "Respiratory rate", "breaths/minute", "/min",
            10, 30, (12, 20), 0, vital=True),
    LabTest("29463-7", "Body weight", "WT", "Body weight", "kg", "kg", 38, 110, (38, 110), 1,
            vital=True),
)  # fmt: skip
TEST_CODES = {test.loinc: test.code for test in LAB_TESTS}

COMORBIDITIES = (
    concept(coding(SNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)"),
            coding(ICD10, "I10", "Essential (primary) hypertension"), text="Hypertension"),
    concept(coding(SNOMED, "44054006", "Diabetes mellitus type 2 (disorder)"),
            coding(ICD10, "E11.9", "Type 2 diabetes mellitus without complications"),
            text="Type 2 diabetes"),
    concept(coding(SNOMED, "13645005", "Chronic obstructive lung disease (disorder)"),
            coding(ICD10, "J44.9", "Chronic obstructive pulmonary disease, unspecified"),
            text="COPD"),
    concept(coding(SNOMED, "53741008", "Coronary arteriosclerosis (disorder)"),
            coding(ICD10, "I25.1", "Atherosclerotic heart disease"), text="Coronary disease"),
    concept(coding(SNOMED, "235595009", "Gastroesophageal reflux disease (disorder)"),
            coding(ICD10, "K21.9", "Gastro-oesophageal reflux disease without oesophagitis"),
            text="GORD"),
    concept(coding(SNOMED, "19943007", "Cirrhosis of liver (disorder)"),
            coding(ICD10, "K74.6", "Other and unspecified cirrhosis of liver"), text="Cirrhosis"),
    concept(coding(SNOMED, "68566005", "Urinary tract infectious disease (disorder)"),
            coding(ICD10, "N39.0", "Urinary tract infection, site not specified"), text="UTI"),
    concept(coding(SNOMED, "233604007", "Pneumonia (disorder)"),
            coding(ICD10, "J18.9", "Pneumonia, unspecified"), text="Pneumonia"),
)  # fmt: skip
CHRONIC_HBV = concept(
    coding(SNOMED, "61977001", "Chronic type B viral hepatitis (disorder)"),
    coding(ICD10, "B18.1", "Chronic viral hepatitis B without delta-agent"),
    text="Chronic hepatitis B",
)
ROUTINE_PROCEDURES = (
    concept(coding(CPT, "76700", "Ultrasound, abdominal, real time with image documentation; "
                   "complete"), text="Abdominal ultrasound"),
    concept(coding(CPT, "71046", "Radiologic examination, chest; 2 views"), text="Chest X-ray"),
    concept(coding(CPT, "93000", "Electrocardiogram, routine ECG with at least 12 leads"),
            text="ECG"),
    concept(coding(CPT, "43239", "Esophagogastroduodenoscopy, flexible, transoral; with biopsy"),
            text="Upper GI endoscopy with biopsy"),
    concept(coding(CPT, "45378", "Colonoscopy, flexible; diagnostic"), text="Colonoscopy"),
    concept(coding(CPT, "74160", "Computed tomography, abdomen; with contrast material(s)"),
            text="CT abdomen with contrast"),
)  # fmt: skip
ROUTINE_DRUGS = (  # (RxNorm, name, route, dose, unit)
    ("161", "acetaminophen", ROUTE_PO, 1000, "mg"),
    ("6809", "metformin", ROUTE_PO, 500, "mg"),
    ("17767", "amlodipine", ROUTE_PO, 5, "mg"),
    ("7646", "omeprazole", ROUTE_PO, 20, "mg"),
    ("2193", "ceftriaxone", ROUTE_IV, 1000, "mg"),
    ("4603", "furosemide", ROUTE_IV, 40, "mg"),
    ("26225", "ondansetron", ROUTE_IV, 8, "mg"),
    ("68244", "lamivudine", ROUTE_PO, 100, "mg"),
)

# Study codes (the shapes of fixtures/generate_salvage2004.py and cohort-rules.md).
HCC = concept(HCC_ICD10, HCC_SNOMED, text="Hepatocellular carcinoma")
HBSAG = concept(
    coding(LOINC, "5196-1",
           "Hepatitis B virus surface Ag [Presence] in Serum or Plasma by Immunoassay"),
    coding(LOCAL_LAB, "HBSAG", "HBsAg"),
    text="HBsAg",
)  # fmt: skip
HBSAG_RESULT = {
    True: concept(coding(LOINC, "LA6576-8", "Positive"), text="Positive"),
    False: concept(coding(LOINC, "LA6577-6", "Negative"), text="Negative"),
}
AFP = concept(
    coding(LOINC, "1834-1", "Alpha-1-Fetoprotein [Mass/volume] in Serum or Plasma"),
    coding(LOCAL_LAB, "AFP", "AFP"),
    text="AFP",
)
EXPIRED = concept(coding(DISCHARGE, "exp", "Expired"))
Y90 = concept(
    coding(
        CPT, "79445", "Radiopharmaceutical therapy, by intra-arterial particulate administration"
    ),
    text="Y-90 radioembolization of liver tumour (resin microspheres)",
)
RESECTIONS = (  # (CPT, CPT display, text, segments); the first two are major
    ("47130", "Hepatectomy, resection of liver; total right lobectomy",
     "Right hemihepatectomy (segments V-VIII)", ("V", "VI", "VII", "VIII")),
    ("47125", "Hepatectomy, resection of liver; total left lobectomy",
     "Left hemihepatectomy (segments II-IV)", ("II", "III", "IV")),
    ("47120", "Hepatectomy, resection of liver; partial lobectomy",
     "Left lateral sectionectomy (segments II-III)", ("II", "III")),
    ("47120", "Hepatectomy, resection of liver; partial lobectomy",
     "Segmentectomy VI", ("VI",)),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Drug:
    rxnorm: str
    name: str
    dose_per_m2: float
    unit: str
    route: Json


DOXORUBICIN = Drug("3639", "doxorubicin", 40, "mg", ROUTE_IV)
PIAF_PARTNERS = (
    Drug("2555", "cisplatin", 20, "mg", ROUTE_IV),
    Drug("5880", "interferon alfa-2b", 5, "10*6.[IU]", ROUTE_SC),
    Drug("4492", "fluorouracil", 400, "mg", ROUTE_IV),
)
SINGLE_DOXORUBICIN_PER_M2 = 60
BODY_SURFACE_M2 = 1.7  # doses are written in mg (or MU), per-m2 dose times this
GROUPS = ("COMBO", "SINGLE", "Y90", "SEQ")
GROUP_WEIGHTS = (65, 16, 8, 11)  # the paper's 32 / 8 / 4 / 5 of 49


# ---------------------------------------------------------------------------------------------
# Output: one stream per resource type

# ---------------------------------------------------------------------------------------------
# One patient's resources
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Salvage:
    """The key dates of a salvage-surgery patient."""

    group: str
    onset: date
    treatment_days: tuple[date, ...]  # chemotherapy cycle starts (none for the Y90 group)
    y90_day: date | None
    surgery: date
    major: bool
    complete_necrosis: bool
    recurrence: date | None
    death: date | None


class PatientWriter:
    """Writes one patient: the study resources of its kind, then routine care to a budget."""

    def __init__(self, index: int, rng: random.Random, out: Writer, routine: Json) -> None:
        self.rng = rng
        self.routine = routine
        self.out = out
        self.pid = f"pat-{index:06d}"
        self.subject = ref("Patient", self.pid)
        self.birth = date(rng.randint(1928, 1975), rng.randint(1, 12), rng.randint(1, 28))
        self.death: date | None = None
        self.written = 0
        self._serial = 0

    def next_id(self, kind: str) -> str:
        self._serial += 1
        return f"{self.pid}-{kind}-{self._serial:05d}"

    def emit(self, resource: Json) -> None:
        self.out.write(resource)
        self.written += 1

    def meta(self, profile: str, day: date) -> Json:
        stamp = f"{day.isoformat()}T{self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:"
        return {
            "versionId": str(self.rng.randint(1, 4)),
            "lastUpdated": f"{stamp}{self.rng.randint(0, 59):02d}.{self.rng.randint(0, 999):03d}Z",
            "source": f"#interface-{self.rng.randint(1, 9)}",
            "profile": [profile],
        }

    # -- kinds of patient --------------------------------------------------------------------

    def write_patient(self, hbv_carrier: bool = False) -> None:
        resource: Json = {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": self.meta(US_CORE + "us-core-patient", CUTOFF),
            "identifier": [{"use": "usual", "system": MRN, "value": f"MRN{self.pid[4:]}"}],
            "active": True,
            "name": [{"use": "official", "family": "Synthetic", "given": [self.pid]}],
            "gender": self.rng.choice(("male", "male", "female")),
            "birthDate": self.birth.isoformat(),
            "managingOrganization": HOSPITAL,
        }
        if self.death is not None:
            resource["deceasedDateTime"] = self.death.isoformat()
        self.emit(resource)
        if hbv_carrier:
            self.write_condition(CHRONIC_HBV, self.random_day(FIRST_DAY, date(1999, 12, 31)))
            self.write_hbsag(self.random_day(FIRST_DAY, self.last_day()), positive=True)

    def write_salvage(self, plan: Salvage) -> None:
        """HCC, HBsAg, AFP, downstaging, resection, pathology, follow-up status and death."""
        rng = self.rng
        self.write_patient()
        self.write_condition(HCC, plan.onset, recorded=plan.onset + timedelta(rng.randint(0, 6)))
        self.write_hbsag(plan.onset + timedelta(rng.randint(0, 6)), positive=rng.random() < 0.8)
        self.write_afp(plan.onset + timedelta(rng.randint(0, 6)), round(10 ** rng.uniform(1.5, 5)))
        for start in plan.treatment_days:
            if plan.group in ("COMBO", "SEQ"):
                self.write_piaf_cycle(start)
            elif plan.group == "SINGLE":
                self.write_dose(DOXORUBICIN, start, SINGLE_DOXORUBICIN_PER_M2)
        if plan.y90_day is not None:
            self.write_procedure(Y90, plan.y90_day)
        self.write_afp(plan.surgery - timedelta(rng.randint(3, 14)), rng.randint(2, 400))
        self.write_resection(plan.surgery, RESECTIONS[rng.randint(0, 1) if plan.major else 2])
        percent = 100 if plan.complete_necrosis else rng.randint(10, 95)
        self.write_necrosis(plan.surgery + timedelta(rng.randint(0, 3)), percent)
        self.write_disease_statuses(plan)

    def write_hcc_without_salvage(self) -> None:
        """HCC treated by doxorubicin but never resected, or resected without downstaging."""
        rng = self.rng
        onset = self.random_day(FIRST_DAY, LAST_HCC_ONSET)
        self.write_patient()
        self.write_condition(HCC, onset, recorded=onset)
        self.write_hbsag(onset, positive=rng.random() < 0.8)
        self.write_afp(onset, round(10 ** rng.uniform(1, 5)))
        if rng.random() < 0.5:
            for cycle in range(rng.randint(2, 5)):
                day = onset + timedelta(14 + 21 * cycle)
                self.write_dose(DOXORUBICIN, day, SINGLE_DOXORUBICIN_PER_M2)
        else:
            self.write_resection(onset + timedelta(rng.randint(20, 60)), RESECTIONS[3])

    # -- study resources ---------------------------------------------------------------------

    def write_condition(self, code: Json, onset: date, recorded: date | None = None) -> None:
        self.emit(
            {
                "resourceType": "Condition",
                "id": self.next_id("cond"),
                "meta": self.meta(US_CORE + "us-core-condition", recorded or onset),
                "clinicalStatus": CLINICAL_ACTIVE if self.rng.random() < 0.8 else RESOLVED,
                "verificationStatus": CONFIRMED,
                "category": PROBLEM_LIST,
                "code": code,
                "subject": self.subject,
                "onsetDateTime": onset.isoformat(),
                "recordedDate": (recorded or onset).isoformat(),
            }
        )

    def observation(
        self, code: Json, day: date, cat: list[Json], value: Json, encounter: Json | None = None
    ) -> Json:
        resource: Json = {
            "resourceType": "Observation",
            "id": self.next_id("obs"),
            "meta": self.meta(VITALS_PROFILE if cat is VITAL_SIGNS else LAB_PROFILE, day),
            "identifier": [{"system": ACCESSION, "value": f"A{day.year}-{self._serial:07d}"}],
            "status": "final",
            "category": cat,
            "code": code,
            "subject": self.subject,
        }
        if encounter is not None:
            resource["encounter"] = encounter
        resource["effectiveDateTime"] = clock(day, self.rng.randint(480, 1020))
        resource["issued"] = clock(day, self.rng.randint(1030, 1380))
        resource["performer"] = [LABS_ORG]
        resource.update(value)
        return resource

    def write_hbsag(self, day: date, positive: bool) -> None:
        value = {"valueCodeableConcept": HBSAG_RESULT[positive]}
        self.emit(self.observation(HBSAG, day, LABORATORY, value))

    def write_afp(self, day: date, value: float) -> None:
        amount = {"valueQuantity": quantity(value, "ng/mL", "ng/mL")}
        self.emit(self.observation(AFP, day, LABORATORY, amount))

    def write_necrosis(self, day: date, percent: int) -> None:
        value = {"valueQuantity": quantity(percent, "%", "%")}
        self.emit(self.observation(NECROSIS_CODE, day, LABORATORY, value))

    def write_disease_statuses(self, plan: Salvage) -> None:
        """Imaging every 3-6 months after surgery; "worsened" at the recurrence."""
        end = plan.death or CUTOFF
        day = plan.surgery + timedelta(self.rng.randint(60, 120))
        while day < end and (plan.recurrence is None or day < plan.recurrence):
            self.write_disease_status(day, NO_EVIDENCE_VALUES[0])
            day += timedelta(self.rng.randint(91, 183))
        if plan.recurrence is not None:
            self.write_disease_status(plan.recurrence, WORSENED)

    def write_disease_status(self, day: date, value: Json) -> None:
        resource = self.observation(
            DISEASE_STATUS_CODE, day, IMAGING, {"valueCodeableConcept": value}
        )
        resource["extension"] = [EVIDENCE_IMAGING]
        self.emit(resource)

    def write_piaf_cycle(self, start: date) -> None:
        """PIAF: doxorubicin on day 1, cisplatin, interferon and 5-FU on days 1-4."""
        self.write_dose(DOXORUBICIN, start, DOXORUBICIN.dose_per_m2)
        for offset in range(PIAF_DAYS):
            for drug in PIAF_PARTNERS:
                self.write_dose(drug, start + timedelta(offset), drug.dose_per_m2)

    def write_dose(self, drug: Drug, day: date, per_m2: float) -> None:
        self.write_administration(
            concept(coding(RXNORM, drug.rxnorm, drug.name), text=drug.name),
            day,
            drug.route,
            quantity(round(per_m2 * BODY_SURFACE_M2, 1), drug.unit, drug.unit),
        )

    def write_administration(self, medication: Json, day: date, route: Json, dose: Json) -> None:
        self.emit(
            {
                "resourceType": "MedicationAdministration",
                "id": self.next_id("ma"),
                "meta": self.meta(US_CORE + "us-core-medicationadministration", day),
                "status": "completed",
                "medicationCodeableConcept": medication,
                "subject": self.subject,
                "effectiveDateTime": clock(day, self.rng.randint(480, 1200)),
                "performer": [{"actor": ref("Practitioner", f"prac-{self.rng.randint(1, 80)}")}],
                "dosage": {"route": route, "dose": dose},
            }
        )

    def write_resection(self, day: date, resection: tuple[str, str, str, tuple[str, ...]]) -> None:
        cpt, display, text, segments = resection
        body_sites = [
            concept(coding(SNOMED, SEGMENT_CODES[s], f"Couinaud segment {s}"), text=f"Segment {s}")
            for s in segments
        ]
        self.write_procedure(concept(coding(CPT, cpt, display), text=text), day, body_sites)

    def write_procedure(self, code: Json, day: date, body_sites: list[Json] | None = None) -> None:
        resource: Json = {
            "resourceType": "Procedure",
            "id": self.next_id("proc"),
            "meta": self.meta(US_CORE + "us-core-procedure", day),
            "status": "completed",
            "code": code,
            "subject": self.subject,
            "performedDateTime": clock(day, self.rng.randint(480, 1020)),
            "performer": [{"actor": ref("Practitioner", f"prac-{self.rng.randint(1, 80)}")}],
        }
        if body_sites:
            resource["bodySite"] = body_sites
        self.emit(resource)

    # -- routine care ------------------------------------------------------------------------

    def last_day(self) -> date:
        return min(self.death or CUTOFF, CUTOFF)

    def random_day(self, first: date, last: date) -> date:
        return first + timedelta(self.rng.randint(0, max(0, (last - first).days)))

    def write_routine(self, budget: int) -> None:
        """`budget` routine resources: problems, procedures, drugs, visits with their results."""
        if budget <= 0:
            return
        rng, last = self.rng, self.last_day()
        conditions, procedures, drugs = (
            round(budget * self.routine[name]) for name in ("condition", "procedure", "medication")
        )
        for _ in range(conditions):
            self.write_condition(rng.choice(COMORBIDITIES), self.random_day(FIRST_DAY, last))
        for _ in range(procedures):
            self.write_procedure(rng.choice(ROUTINE_PROCEDURES), self.random_day(FIRST_DAY, last))
        for _ in range(drugs):
            rxnorm, name, route, dose, unit = rng.choice(ROUTINE_DRUGS)
            medication = concept(coding(RXNORM, rxnorm, name), text=name)
            day = self.random_day(FIRST_DAY, last)
            self.write_administration(medication, day, route, quantity(dose, unit, unit))
        self.write_visits(budget - conditions - procedures - drugs, last)

    def write_visits(self, budget: int, last: date) -> None:
        """Encounters, each followed by its share of `budget` Observations."""
        if budget <= 0:
            return
        visits = max(1, round(budget / (self.routine["observations_per_encounter"] + 1)))
        shares = Counter(self.rng.randrange(visits) for _ in range(budget - visits))
        days = sorted(self.random_day(FIRST_DAY, last) for _ in range(visits))
        for number, day in enumerate(days):
            encounter = self.write_encounter(day)
            for _ in range(shares[number]):
                self.write_result(self.rng.choice(LAB_TESTS), day, encounter)

    def write_encounter(self, day: date) -> Json:
        inpatient = self.rng.random() < 0.15
        end = min(day + timedelta(self.rng.randint(1, 9)), self.last_day()) if inpatient else day
        encounter_id = self.next_id("enc")
        resource: Json = {
            "resourceType": "Encounter",
            "id": encounter_id,
            "meta": self.meta(US_CORE + "us-core-encounter", end),
            "status": "finished",
            "class": coding(ACT_CODE, "IMP", "inpatient encounter")
            if inpatient
            else coding(ACT_CODE, "AMB", "ambulatory"),
            "type": [{"text": self.rng.choice(WARDS)}],
            "subject": self.subject,
            "participant": [{"individual": ref("Practitioner", f"prac-{self.rng.randint(1, 80)}")}],
            "period": {"start": clock(day, 540), "end": clock(end, 600)},
            "serviceProvider": HOSPITAL,
        }
        if inpatient and end == self.death:
            resource["hospitalization"] = {"dischargeDisposition": EXPIRED}
        self.emit(resource)
        return ref("Encounter", encounter_id)

    def write_result(self, test: LabTest, day: date, encounter: Json) -> None:
        value = test.draw(self.rng)
        low, high = test.normal
        flag = "L" if value < low else "H" if value > high else "N"
        value_quantity = {"valueQuantity": quantity(value, test.unit, test.ucum)}
        cat = VITAL_SIGNS if test.vital else LABORATORY
        resource = self.observation(TEST_CODES[test.loinc], day, cat, value_quantity, encounter)
        resource["interpretation"] = INTERPRETATIONS[flag]
        resource["referenceRange"] = [
            {
                "low": quantity(low, test.unit, test.ucum),
                "high": quantity(high, test.unit, test.ucum),
                "text": f"{low}-{high} {test.unit}",
            }
        ]
        self.emit(resource)


# ---------------------------------------------------------------------------------------------
# Planning and the whole export
# ---------------------------------------------------------------------------------------------


def plan_salvage(rng: random.Random) -> Salvage:
    """Onset 1995-2001, downstaging from 1-5 weeks later, surgery 3-13 weeks after it ends."""
    group = rng.choices(GROUPS, GROUP_WEIGHTS)[0]
    onset = FIRST_DAY + timedelta(rng.randint(0, (LAST_HCC_ONSET - FIRST_DAY).days))
    start = onset + timedelta(rng.randint(7, 35))
    cycles: list[date] = []
    if group != "Y90":
        day = start
        for _ in range(rng.randint(2, 6)):
            cycles.append(day)
            day += timedelta(rng.randint(21, 28))
    y90_day = None
    if group in ("Y90", "SEQ"):
        y90_day = cycles[-1] + timedelta(rng.randint(28, 42)) if cycles else start
    last_treatment = max([*cycles, *([y90_day] if y90_day else [])])
    surgery = last_treatment + timedelta(rng.randint(21, 90))
    death = surgery + timedelta(rng.randint(40, 3000)) if rng.random() < 0.45 else None
    death = death if death is not None and death < CUTOFF else None
    recurrence = surgery + timedelta(rng.randint(150, 1800)) if rng.random() < 0.45 else None
    if recurrence is not None and recurrence >= (death or CUTOFF):
        recurrence = None
    return Salvage(
        group=group,
        onset=onset,
        treatment_days=tuple(cycles),
        y90_day=y90_day,
        surgery=surgery,
        major=rng.random() < 0.57,
        complete_necrosis=rng.random() < 0.27,
        recurrence=recurrence,
        death=death,
    )


def write_patients(
    out: Writer, shape: Json, resources: int, kinds: list[str], seed: int
) -> dict[str, list[str]]:
    """Every patient in turn; each gets an equal share of the resources still to write.
    Returns the patient ids of each kind."""
    rng = random.Random(seed)
    planted: dict[str, list[str]] = {}
    for index, kind in enumerate(kinds):
        budget = (resources - out.total) // (len(kinds) - index)
        writer = PatientWriter(index + 1, rng, out, shape["routine"])
        if kind == "salvage":
            plan = plan_salvage(rng)
            writer.death = plan.death
            writer.write_salvage(plan)
        elif kind == "hcc_other":
            writer.write_hcc_without_salvage()
        else:
            writer.write_patient(hbv_carrier=kind == "hbv_carrier")
        planted.setdefault(kind, []).append(writer.pid)
        writer.write_routine(budget - writer.written)
    return planted
