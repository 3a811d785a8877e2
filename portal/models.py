"""Import every feature's models so metadata is complete (migrations, create_all)."""

from portal.agents.models import Agent, AgentNonce, AgentStatus, AgentUpdate, EnrolmentCode
from portal.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from portal.auth.models import PasswordHistory, User, UserRole
from portal.capture.models import (
    CapturedPage,
    CaptureKind,
    JobState,
    PageSource,
    PageStatus,
    ScanJob,
    SupplementReason,
)
from portal.dictionary.models import BusinessType, ChecklistItem, ColorMode, Material, Requirement
from portal.jobs.models import SchedulerLease
from portal.org.models import Department, DepartmentKind, Window
from portal.registry.models import (
    Business,
    BusinessStatus,
    CaptureState,
    QuarantinedRecord,
    SyncRun,
    SyncState,
)
from portal.stats.models import CaptureSummary
from portal.storage.models import ImageBlob, Rendition
from portal.warnings.models import CaptureWarning, WarningClosure, WarningLevel

__all__ = [
    "Agent", "AgentNonce", "AgentStatus", "AgentUpdate", "AuditCheckpoint", "AuditEntry",
    "AuditHead", "Business", "BusinessStatus", "BusinessType", "CaptureKind", "CaptureState",
    "CaptureSummary", "CaptureWarning", "CapturedPage", "ChecklistItem", "ColorMode", "Department", "DepartmentKind",
    "EnrolmentCode", "ImageBlob", "JobState", "Material", "PageSource", "PageStatus",
    "PasswordHistory", "QuarantinedRecord", "Rendition", "Requirement", "ScanJob",
    "SchedulerLease", "SupplementReason", "SyncRun", "SyncState", "User", "UserRole",
    "WarningClosure", "WarningLevel", "Window",
]
